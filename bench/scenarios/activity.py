"""activity: what knowing each site's requests costs, from Caddy's access log streamed to the activator (one JSON
line per request) against Caddy's per-host metrics read once a tick, under the same wrk load in the same run; and
what one read of Caddy's /metrics costs with 10 and 100 sites."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time

import aiohttp
import docker
import psutil

from activator.config import load_config
from activator.core.hosts import HostTable
from activator.proxy.caddy import CaddyAdmin
from activator.proxy.metrics import CaddyMetrics
from bench.report import Figure, Result
from bench.scenarios.throughput import NGINX
from tests.integration.harness import Deployment, site, until

STATIC = "dialup-test-static:latest"
SOURCES = ("log", "metrics")
KiB = 1024


def _wrk(url: str, host: str, seconds: float) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx) of one wrk run (2 threads, 64 connections). Blocking: use a thread."""
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds:g}s", "-H", f"Host: {host}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert rps and total, out
    return float(rps.group(1)), int(total.group(1)), int(errors.group(1)) if errors else 0


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system  # children are not counted: neither process forks


def _caddy(d: Deployment) -> psutil.Process:
    return psutil.Process(int((d.dir / "state" / "system" / "caddy.pid").read_text().strip()))


async def _restart(d: Deployment, source: str) -> None:
    """The activator again, with activity from `source` (the running site and Caddy are adopted; Caddy gets the
    config of the new source: a reload)."""
    assert d.proc is not None
    d.proc.terminate()
    await asyncio.to_thread(d.proc.wait, 15)
    d.server["activity"] = source
    d.config_path.write_text(d.render(d.sites, **d.server))
    await d.start()


async def _seen(d: Deployment) -> float:
    return float((await d.status())["web"]["requests_per_minute"])


async def _round(d: Deployment, source: str, seconds: float) -> dict[str, float]:
    await _restart(d, source)
    assert d.proc is not None
    activator, caddy = psutil.Process(d.proc.pid), _caddy(d)
    async with aiohttp.ClientSession() as s:

        async def counted() -> bool:  # the access log stream connected, or the metrics' baseline read
            async with s.get(d.url, headers={"Host": "web.test"}) as r:
                assert r.status == 200
            return await _seen(d) > 0

        await until(counted, 30, f"requests to be counted from the {source}")
        await asyncio.sleep(1.5)  # one more tick: everything sent so far is counted
    before_seen = await _seen(d)
    cpu_a, cpu_c, t0 = _cpu(activator), _cpu(caddy), time.monotonic()
    rps, sent, errors = await asyncio.to_thread(_wrk, d.url + "/", "web.test", seconds)
    cpu_a, cpu_c, elapsed = _cpu(activator) - cpu_a, _cpu(caddy) - cpu_c, time.monotonic() - t0
    await asyncio.sleep(2.5)  # a tick or two: the last requests are read (metrics) or their lines arrive (log)
    # Rates over a minute: the whole round (restart to now) is shorter, so the minute's count is the round's.
    counted_n = await _seen(d) - before_seen
    return {
        "activator": 100 * cpu_a / elapsed,
        "caddy": 100 * cpu_c / elapsed,
        "rps": rps,
        "sent": sent,
        "counted": counted_n,
        "errors": errors,
    }


async def _wrk_rounds(quick: bool) -> dict[str, list[dict[str, float]]]:
    rounds, seconds = (1, 3.0) if quick else (3, 10.0)
    client = docker.from_env()
    d = Deployment(client, [site("web", NGINX, idle_timeout="off", cpus=1.0)])
    runs: dict[str, list[dict[str, float]]] = {source: [] for source in SOURCES}
    try:
        await d.start()
        async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "web.test"}) as r:
            assert r.status == 200
        await d.wait_routed("web")
        for i in range(rounds):  # alternated, and in the other order every other round: drift hits both alike
            for source in SOURCES if i % 2 == 0 else SOURCES[::-1]:
                runs[source].append(await _round(d, source, seconds))
    finally:
        await asyncio.to_thread(d.close)
        client.close()
    return runs


async def _reads(n_sites: int, reads: int) -> dict[str, float]:
    """One read of Caddy's /metrics as the activator does it (the request over the admin socket, the parse, the
    counters' rises, the sites found), made here in the bench's process: its time, its CPU here (the activator's
    share), its bytes and Caddy's CPU for it, before any site had a request since Caddy's last reload and after
    each had one."""
    client = docker.from_env()
    sites = [site(f"s{i}", STATIC, idle_timeout="off", network="plain") for i in range(n_sites)]
    d = Deployment(client, sites, budget={"memory": f"{n_sites * 64 + 64}MiB"})
    out: dict[str, float] = {}
    try:
        await d.start()
        config = load_config(d.config_path)
        admin = CaddyAdmin(config.caddy.admin)
        await admin.open()
        caddy = _caddy(d)
        hosts = HostTable((host, s.name) for s in config.sites for host in s.hosts)
        metrics = CaddyMetrics(admin, config, hosts.site, lambda site, n: None)
        try:
            for phase in ("idle", "active"):
                if phase == "active":
                    await _request_every_site(d, n_sites)
                await metrics.poll()  # warm: the connection to the admin socket
                times, cpu, own = [], _cpu(caddy), time.process_time()
                for _ in range(reads):
                    began = time.perf_counter()
                    assert await metrics.poll()
                    times.append(time.perf_counter() - began)
                out[f"{phase} own ms"] = (time.process_time() - own) / reads * 1000
                out[f"{phase} ms"] = statistics.median(times) * 1000
                out[f"{phase} caddy ms"] = (_cpu(caddy) - cpu) / reads * 1000
                out[f"{phase} KiB"] = metrics.bytes / KiB
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(d.close)
        client.close()
    return out


async def _request_every_site(d: Deployment, n_sites: int) -> None:
    """Each site started by a request, then (once every route has switched, the last reload) one more request
    each, straight through Caddy to its container: every host has its series in Caddy's metrics."""
    connector = aiohttp.TCPConnector(limit=8)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def get(name: str) -> None:
            async with s.get(d.url, headers={"Host": f"{name}.test"}) as r:
                assert r.status == 200, await r.text()

        names = [f"s{i}" for i in range(n_sites)]
        await asyncio.gather(*(get(name) for name in names))
        for name in names:
            await d.wait_routed(name)
        await asyncio.gather(*(get(name) for name in names))


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


async def activity(quick: bool) -> Result:
    runs = await _wrk_rounds(quick)
    counts = (10,) if quick else (10, 100)
    reads = {n: await _reads(n, 10 if quick else 50) for n in counts}
    log, met = runs["log"], runs["metrics"]
    figures = [
        Figure("activator CPU, metrics", _mean(met, "activator"), "% of a core", _mean(log, "activator"), "access log"),
        Figure("Caddy CPU, metrics", _mean(met, "caddy"), "% of a core", _mean(log, "caddy"), "access log"),
        Figure("req/s through Caddy, metrics", _mean(met, "rps"), "req/s", _mean(log, "rps"), "access log"),
        Figure("Caddy CPU per 1,000 requests, metrics", _per_k(met), "ms", _per_k(log), "access log"),
        Figure("counted/sent, metrics", 100 * _ratio(met), "%", 100 * _ratio(log), "access log"),
        Figure("non-2xx", sum(r["errors"] for r in met + log), "responses", 0, "must be"),
    ]
    idle = "no site requested since the reload"
    for n, r in reads.items():
        for what, unit, key in (
            ("read", "ms", "ms"),
            ("size", "KiB", "KiB"),
            ("activator CPU per read", "ms", "own ms"),
            ("Caddy CPU per read", "ms", "caddy ms"),
        ):
            figures.append(
                Figure(f"/metrics {what}, {n} sites, all requested", r[f"active {key}"], unit, r[f"idle {key}"], idle)
            )
    seconds = 3 if quick else 10
    return Result(
        "activity",
        f"wrk -t2 -c64, {seconds} s x {len(met)} per source, alternated: activity from Caddy's access log vs "
        f"its per-host metrics; one /metrics read with {' and '.join(map(str, counts))} sites",
        figures,
        {f"activator CPU, {source}": [r["activator"] for r in rows] for source, rows in runs.items()}
        | {f"Caddy CPU, {source}": [r["caddy"] for r in rows] for source, rows in runs.items()},
        unit="% of a core, each round",
    )


def _per_k(rows: list[dict[str, float]]) -> float:
    """Caddy's CPU time (ms) per 1,000 requests served, over all rounds."""
    return sum(r["caddy"] / 100 / r["rps"] for r in rows) / len(rows) * 1e6


def _ratio(rows: list[dict[str, float]]) -> float:
    return sum(r["counted"] for r in rows) / sum(r["sent"] for r in rows)
