"""Wake from paused and cold start through Caddy, and the activator's idle CPU with 10 sites.

    .venv/bin/python -m bench.lifecycle [--runs 10] [--idle-seconds 60]

Runs its own `dialup up` (own Caddy, ports, state dir and container label). Wake: a site with
pause_after = 1s is left until Docker reports it paused, then the clock runs from sending GET / through
Caddy to the last byte of its real body. Cold start: the same for a site whose container is stopped.
Idle CPU: a second deployment with 10 configured sites, all started and then left alone (no requests, the
reaper ticking every second as by default); the activator process's CPU time over the window, from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp
import docker
import psutil

from bench.cold_start import through_activator
from bench.sites import running_sites
from tests.integration.harness import Deployment, docker_status, site, until

BODY = "static test site\n"


async def wake_once(d: Deployment, session: aiohttp.ClientSession) -> float:
    await until(lambda: docker_status(d.container("nap")) == "paused", 20, "the site to pause")
    began = time.perf_counter()
    async with session.get(d.url + "/", headers={"Host": "nap.test"}) as r:
        body = await r.text()
    elapsed = time.perf_counter() - began
    assert (r.status, body) == (200, BODY), body
    return elapsed


async def idle_cpu(client: docker.DockerClient, image: str, seconds: float) -> tuple[float, float]:
    d = await running_sites(client, 10, image)
    try:
        assert d.proc is not None
        proc = psutil.Process(d.proc.pid)
        await asyncio.sleep(2)  # let the start's background work (route switches, event rows) settle
        before, t0 = proc.cpu_times(), time.monotonic()
        await asyncio.sleep(seconds)
        after, t1 = proc.cpu_times(), time.monotonic()
        cpu = (after.user - before.user) + (after.system - before.system)
        return cpu, 100.0 * cpu / (t1 - t0)
    finally:
        d.close()


async def main(runs: int, idle_seconds: float) -> None:
    client = docker.from_env()
    image = "dialup-test-static:latest"
    d = Deployment(
        client,
        [site("nap", image, pause_after="1s", idle_timeout="off"), site("blog", image, idle_timeout="off")],
        reaper_interval="100ms",
    )
    try:
        await d.start()
        async with aiohttp.ClientSession() as session:
            async with session.get(d.url, headers={"Host": "nap.test"}) as r:  # first start, then pauses
                assert r.status == 200
            wakes = [await wake_once(d, session) for _ in range(runs)]
            async with session.get(d.url, headers={"Host": "blog.test"}) as r:
                expected = await r.text()
            colds = [await through_activator(d, session, expected) for _ in range(runs)]
    finally:
        d.close()
    for name, xs in (("wake from paused through Caddy", wakes), ("cold start through Caddy", colds)):
        xs = sorted(xs)
        print(
            f"{name:<34} median {statistics.median(xs) * 1000:7.1f} ms   "
            f"min {xs[0] * 1000:6.1f}   max {xs[-1] * 1000:6.1f}   ({runs} runs)"
        )
    cpu, percent = await idle_cpu(client, image, idle_seconds)
    print(
        f"{'activator idle, 10 running sites':<34} {cpu:.3f} s CPU over {idle_seconds:g} s = {percent:.2f} % of a core"
    )
    client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.idle_seconds))
