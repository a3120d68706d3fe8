"""The monitor's cost per tick with 20 running containers, and one timed run of the eviction scenario.

    .venv/bin/python -m bench.governance [--window 30]

Monitor: two deployments of 20 running static sites each, measured one after the other in the same run:
the activator process's CPU time over `window` seconds with monitor_interval = 0.5s, and the same with
monitor_interval = 1h (the baseline: everything but the monitor). The difference divided by the ticks is
the CPU cost of one tick; the tick's wall time comes from the activator's own histogram.
Eviction: budget 160 MiB and three lazy 64 MiB sites; requests to A, B, C (C evicts A), then A (evicts B),
each timed from sending through Caddy to the last byte.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import docker
import psutil

from bench.sites import running_sites
from tests.integration.harness import Deployment, site

IMAGE = "dialup-test-static:latest"


async def activator_cpu(client: docker.DockerClient, interval: str, window: float) -> tuple[float, float, float]:
    """(CPU seconds over the window, ticks counted, mean tick wall time in seconds)."""
    d = await running_sites(client, 20, IMAGE, monitor_interval=interval)
    try:
        assert d.proc is not None
        proc = psutil.Process(d.proc.pid)
        await asyncio.sleep(2)  # let the starts' background work settle
        ticks0 = await d.metric("dialup_monitor_tick_seconds_count")
        sum0 = await d.metric("dialup_monitor_tick_seconds_sum")
        before = proc.cpu_times()
        await asyncio.sleep(window)
        after = proc.cpu_times()
        ticks = await d.metric("dialup_monitor_tick_seconds_count") - ticks0
        wall = await d.metric("dialup_monitor_tick_seconds_sum") - sum0
        cpu = (after.user - before.user) + (after.system - before.system)
        return cpu, ticks, (wall / ticks if ticks else 0.0)
    finally:
        d.close()


async def eviction(client: docker.DockerClient) -> list[tuple[str, float, str]]:
    d = Deployment(client, [site(n, IMAGE, idle_timeout="off") for n in "abc"], budget={"memory": "160MiB"})
    rows: list[tuple[str, float]] = []
    try:
        await d.start()
        async with aiohttp.ClientSession() as session:
            for name in "abca":
                began = time.perf_counter()
                async with session.get(d.url, headers={"Host": f"{name}.test"}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                elapsed = time.perf_counter() - began
                await d.wait_routed(name)
                rows.append((name, elapsed * 1000))
        evicted = [e for e in await d.events() if e["kind"] == "evicted"]
        assert len(evicted) == 2, evicted
        return [(n, ms, _note(i, evicted)) for i, (n, ms) in enumerate(rows)]
    finally:
        d.close()


def _note(index: int, evicted: list[dict[str, object]]) -> str:
    if index < 2:
        return "fits"
    e = evicted[index - 2]
    return f"{e['site']} evicted ({e['detail']}, drain and stop {float(e['duration_ms'] or 0):.0f} ms)"


async def main(window: float) -> None:
    client = docker.from_env()
    cpu_on, ticks, wall = await activator_cpu(client, "500ms", window)
    cpu_off, _, _ = await activator_cpu(client, "1h", window)
    per_tick = (cpu_on - cpu_off) / ticks if ticks else float("nan")
    print(
        f"activator CPU over {window:g} s, 20 running sites: monitor every 0.5 s {cpu_on:.3f} s, "
        f"monitor off {cpu_off:.3f} s"
    )
    print(f"monitor: {ticks:.0f} ticks, {per_tick * 1000:.2f} ms CPU per tick, {wall * 1000:.2f} ms wall per tick")
    for name, ms, note in await eviction(client):
        print(f"request to {name}: {ms:7.1f} ms   {note}")
    client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    asyncio.run(main(args.window))
