"""burst (many requests at a stopped site) and footprint (the activator's memory and idle CPU by site count)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import docker
import psutil

from bench.cold_start import stop_site, through_activator
from bench.report import Figure, Result, percentile
from tests.integration.harness import Deployment, site

STATIC = "dialup-test-static:latest"
MiB = 1 << 20


async def _rss_peak(pid: int, stop: asyncio.Event) -> int:
    proc, peak = psutil.Process(pid), 0
    while not stop.is_set():
        peak = max(peak, proc.memory_info().rss)
        await asyncio.sleep(0.02)
    return peak


async def burst(quick: bool) -> Result:
    n = 200 if quick else 1000
    client = docker.from_env()
    d = Deployment(client, [site("blog", STATIC, idle_timeout="off", max_waiting=n)])
    try:
        await d.start()
        assert d.proc is not None
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.get(d.url, headers={"Host": "blog.test"}) as r:
                expected = await r.text()
            single = [await through_activator(d, session, expected) for _ in range(3)]
            await stop_site(d, "blog")  # through_activator leaves it running
            idle_rss = psutil.Process(d.proc.pid).memory_info().rss
            stop = asyncio.Event()
            peak_task = asyncio.ensure_future(_rss_peak(d.proc.pid, stop))
            since = time.time()  # the engine takes fractional seconds: only this burst's starts count

            async def one() -> float | None:
                began = time.perf_counter()
                try:
                    async with session.get(d.url, headers={"Host": "blog.test"}) as r:
                        ok = r.status == 200 and await r.text() == expected
                except (aiohttp.ClientError, OSError, TimeoutError):
                    ok = False
                return time.perf_counter() - began if ok else None

            began = time.perf_counter()
            results = await asyncio.gather(*(one() for _ in range(n)))
            total = time.perf_counter() - began
            stop.set()
            peak = await peak_task
        starts = d.starts("blog", since)
    finally:
        d.close()
        client.close()
    ok = [r for r in results if r is not None]
    single_median = sorted(single)[len(single) // 2]
    figures = [
        Figure("container starts", starts, "starts", 1, "must be"),
        Figure("errors", n - len(ok), "requests", 0, "must be"),
        Figure("p50", percentile(ok, 50) * 1000, "ms", single_median * 1000, "one cold request"),
        Figure("p99", percentile(ok, 99) * 1000, "ms", single_median * 1000, "one cold request"),
        Figure("all answered", total * 1000, "ms", single_median * 1000, "one cold request"),
        Figure("activator RSS peak", peak / MiB, "MiB", idle_rss / MiB, "idle, same process"),
    ]
    return Result(
        "burst",
        f"{n} concurrent requests at a stopped static site",
        figures,
        {f"{n} concurrent": [x * 1000 for x in ok], "one cold request": [x * 1000 for x in single]},
    )


async def _footprint(client: docker.DockerClient, sites: int, window: float) -> tuple[float, float]:
    """(resident MiB, % of a core while idle) of an activator with `sites` configured (created, none running).
    The sites have network = "plain": this measures the activator, not a thousand holders (see cold-start)."""
    d = Deployment(client, [site(f"s{i}", STATIC, network="plain") for i in range(sites)])
    try:
        await d.start()
        assert d.proc is not None
        proc = psutil.Process(d.proc.pid)
        await asyncio.sleep(1)  # settle after start-up
        before, t0 = proc.cpu_times(), time.monotonic()
        await asyncio.sleep(window)
        after, t1 = proc.cpu_times(), time.monotonic()
        cpu = (after.user - before.user) + (after.system - before.system)
        return proc.memory_info().rss / MiB, 100 * cpu / (t1 - t0)
    finally:
        await asyncio.to_thread(d.close)


async def footprint(quick: bool) -> Result:
    counts = (10, 100) if quick else (10, 100, 1000)
    window = 5.0 if quick else 30.0
    client = docker.from_env()
    try:
        measured = {n: await _footprint(client, n, window) for n in counts}
    finally:
        client.close()
    base_rss, base_cpu = measured[counts[0]]
    figures = []
    for n, (rss, cpu) in measured.items():
        figures.append(Figure(f"RSS, {n} sites", rss, "MiB", base_rss, f"{counts[0]} sites"))
        figures.append(Figure(f"idle CPU, {n} sites", cpu, "% of a core", base_cpu, f"{counts[0]} sites"))
    return Result(
        "footprint",
        f"activator memory and idle CPU ({window:g} s) by configured sites",
        figures,
        {f"RSS {n} sites": [rss] for n, (rss, _) in measured.items()},
        unit="MiB",
    )
