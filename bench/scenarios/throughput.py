"""warm-path and fallback-path: wrk through Caddy with and without the activator, and through the activator."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import aiohttp
import docker

from bench.report import Figure, Result
from tests.integration.harness import Deployment, site

NGINX = "dialup-test-nginx:latest"  # busybox httpd would be the bottleneck (DESIGN: known traps)
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, host: str, seconds: float) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) from one wrk run (2 threads, 64 connections). Blocking: use a thread."""
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{seconds:g}s", "--latency", "-H", f"Host: {host}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    figures = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        figures[f"p{pct}"] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["errors"] = float(errors.group(1)) if errors else 0.0
    return figures


async def _deployment() -> tuple[Deployment, int]:
    hosts = ["web.test", "fallback.test", "fixed.test"]
    d = Deployment(docker.from_env(), [site("web", NGINX, hosts=hosts, idle_timeout="off", cpus=1.0)])
    await d.start()
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "web.test"}) as r:
        assert r.status == 200
    await d.wait_routed("web")
    return d, int((await d.status())["web"]["host_port"])


def _figures(label: str, runs: list[dict[str, float]], base: list[dict[str, float]], base_name: str) -> list[Figure]:
    def mean(rows: list[dict[str, float]], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    return [
        Figure(f"{label} req/s", mean(runs, "rps"), "req/s", mean(base, "rps"), base_name),
        Figure(f"{label} p50", mean(runs, "p50"), "ms", mean(base, "p50"), base_name),
        Figure(f"{label} p99", mean(runs, "p99"), "ms", mean(base, "p99"), base_name),
        Figure(f"{label} non-2xx", sum(r["errors"] for r in runs), "responses", 0, "must be"),
    ]


async def _caddy(d: Deployment, method: str, path: str, body: object = None) -> object:
    connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.request(method, "http://localhost" + path, json=body) as r,
    ):
        text = await r.text()
        assert r.status == 200, text
        return json.loads(text) if text.strip() else None


async def _fixed_route(d: Deployment, port: int) -> None:
    """The site's own route, copied whole ahead of it for fixed.test (one of the site's hosts), with its upstream
    a fixed address instead of the route file: what reading the file at each request costs, and nothing else."""
    route = await _caddy(d, "GET", "/id/dialup-site-web")
    assert isinstance(route, dict)
    proxy = route["handle"][-1]
    assert proxy["handler"] == "reverse_proxy" and proxy["upstreams"][0]["dial"].startswith("{file.")
    proxy["upstreams"] = [{"dial": f"127.0.0.1:{port}"}]
    del proxy["@id"]
    fixed = {**route, "@id": "bench-fixed", "match": [{"host": ["fixed.test"]}]}
    await _caddy(d, "PUT", "/config/apps/http/servers/dialup/routes/0", fixed)


async def warm_path(quick: bool) -> Result:
    rounds, seconds = (1, 2.0) if quick else (3, 10.0)
    d, port = await _deployment()
    runs: dict[str, list[dict[str, float]]] = {"activator up": [], "no activator": [], "direct": [], "fixed": []}
    try:
        await _fixed_route(d, port)
        for _ in range(rounds):  # alternated, so that drift on a shared machine hits them all alike
            runs["activator up"].append(await asyncio.to_thread(wrk, d.url + "/", "web.test", seconds))
            runs["fixed"].append(await asyncio.to_thread(wrk, d.url + "/", "fixed.test", seconds))
            runs["direct"].append(await asyncio.to_thread(wrk, f"http://127.0.0.1:{port}/", "web.test", seconds))
            assert d.proc is not None
            d.proc.terminate()
            await asyncio.to_thread(d.proc.wait, 15)
            runs["no activator"].append(await asyncio.to_thread(wrk, d.url + "/", "web.test", seconds))
            await d.start()  # adopts the running site and the Caddy config: restarts nothing ...
            await _fixed_route(d, port)  # ... but gives Caddy dialup's config again: the copy was not in it
    finally:
        await asyncio.to_thread(d.close)
    figures = _figures(
        "through Caddy, activator up", runs["activator up"], runs["no activator"], "Caddy with no activator"
    )
    figures += _figures(
        "through Caddy, no activator", runs["no activator"], runs["direct"], "straight to the container"
    )
    figures += _figures("route file read per request", runs["activator up"], runs["fixed"], "a fixed upstream")
    return Result(
        "warm-path",
        f"wrk -t2 -c64, {seconds:g} s x {rounds}: Caddy to a running nginx site, activator up vs down vs direct,"
        " and its route (upstream from its route file) vs a copy with a fixed upstream",
        figures,
        {name: [r["p99"] for r in rows] for name, rows in runs.items()},
        unit="ms, p99 of each round",
    )


async def _fallback_route(d: Deployment) -> None:
    """A route of our own, ahead of the site's, that sends fallback.test (one of the site's hosts) to the
    activator alone: every request through it is forwarded by the activator, while the site's own route (which
    the activator keeps to what it wants, putting back any change made behind its back) goes to the container."""
    route = {
        "@id": "bench-fallback",
        "match": [{"host": ["fallback.test"]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{d.listen_port}"}]}],
        "terminal": True,
    }
    connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
    async with aiohttp.ClientSession(connector=connector) as s:
        async with s.put("http://localhost/config/apps/http/servers/dialup/routes/0", json=route) as r:
            assert r.status == 200, await r.text()


async def fallback_path(quick: bool) -> Result:
    """A running site reached through a route that stays on the activator: every request forwarded by it."""
    rounds, seconds = (1, 2.0) if quick else (3, 10.0)
    d, _ = await _deployment()
    runs: dict[str, list[dict[str, float]]] = {"via activator": [], "Caddy direct": []}
    try:
        await _fallback_route(d)
        for _ in range(rounds):
            runs["via activator"].append(await asyncio.to_thread(wrk, d.url + "/", "fallback.test", seconds))
            runs["Caddy direct"].append(await asyncio.to_thread(wrk, d.url + "/", "web.test", seconds))
    finally:
        await asyncio.to_thread(d.close)
    return Result(
        "fallback-path",
        f"wrk -t2 -c64, {seconds:g} s x {rounds}: Caddy -> activator -> nginx, vs Caddy -> nginx",
        _figures("through the activator", runs["via activator"], runs["Caddy direct"], "Caddy straight to it"),
        {name: [r["p99"] for r in rows] for name, rows in runs.items()},
        unit="ms, p99 of each round",
    )
