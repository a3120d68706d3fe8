"""Cold start through Caddy and the activator, against a bare `docker start` of the same container.

    .venv/bin/python -m bench.cold_start [--runs 10] [--image dialup-example-static:latest]

Runs its own `dialup up` (own Caddy, ports, state dir, container label) on one static site. Each run:
the site's container is stopped (and Caddy's route is back on the activator), then the clock runs from
sending GET / through Caddy to the last byte of the site's real body. The baseline, alternated with it:
the same stopped container started with the docker SDK, then GET on its published port every 1 ms until
the body arrives. Prints each median, p90, and their difference and ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

import aiohttp
import docker

from tests.integration.harness import Deployment, site, until


async def _get_body(session: aiohttp.ClientSession, url: str, host: str) -> str | None:
    try:
        async with session.get(url, headers={"Host": host}) as r:
            return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, OSError):
        return None


async def stop_site(d: Deployment, name: str) -> None:
    """Stop the site's container from outside and wait until Caddy routes it to the activator again."""
    await asyncio.to_thread(d.container(name).stop, timeout=5)
    await until(lambda: _route_is_activator(d, name), 10, "the route back on the activator")


async def _route_is_activator(d: Deployment, name: str) -> bool:
    return d.route_on_activator(name) and (await d.status())[name]["state"] == "stopped"


async def through_activator(d: Deployment, session: aiohttp.ClientSession, expected: str, name: str = "blog") -> float:
    """A stopped site's container; from sending GET / through Caddy to the last byte of its real body."""
    await stop_site(d, name)
    began = time.perf_counter()
    body = await _get_body(session, d.url + "/", f"{name}.test")
    elapsed = time.perf_counter() - began
    assert body == expected, body
    return elapsed


async def bare_docker_start(d: Deployment, session: aiohttp.ClientSession, expected: str, name: str = "blog") -> float:
    """The same stopped container started with the docker SDK, its port polled every 1 ms until the body arrives."""
    await stop_site(d, name)
    container = d.container(name)
    # Joined to a holder, the port is the holder's and known before the start; else the engine picks it then.
    holder = container.attrs["HostConfig"]["NetworkMode"].startswith("container:")
    port = _holder_port(d, name) if holder else None
    began = time.perf_counter()
    await asyncio.to_thread(container.start)
    if port is None:
        await asyncio.to_thread(container.reload)
        port = container.ports["8080/tcp"][0]["HostPort"]
    # The baseline is defined as polling the port every millisecond.
    while (body := await _get_body(session, f"http://127.0.0.1:{port}/", f"{name}.test")) is None:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - began
    assert body == expected, body
    return elapsed


def _holder_port(d: Deployment, name: str) -> str:
    holder = d.holder(name)
    return str(holder.ports["8080/tcp"][0]["HostPort"])


def _summary(name: str, xs: list[float]) -> dict[str, Any]:
    xs = sorted(xs)
    return {"name": name, "median_ms": statistics.median(xs) * 1000, "p90_ms": xs[int(0.9 * (len(xs) - 1))] * 1000}


async def main(runs: int, image: str) -> None:
    client = docker.from_env()
    d = Deployment(client, [site("blog", image)])
    try:
        await d.start()
        async with aiohttp.ClientSession() as session:
            # Warm up both paths once (page cache, Caddy's first dial), then alternate them.
            expected = await _warm_body(d, session)
            activator: list[float] = []
            bare: list[float] = []
            for _ in range(runs):
                activator.append(await through_activator(d, session, expected))
                bare.append(await bare_docker_start(d, session, expected))
        a, b = _summary("cold start through Caddy + activator", activator), _summary("bare docker start", bare)
        for row in (a, b):
            print(f"{row['name']:<40} median {row['median_ms']:7.1f} ms   p90 {row['p90_ms']:7.1f} ms   ({runs} runs)")
        diff = a["median_ms"] - b["median_ms"]
        print(f"{'difference (activator - bare)':<40} {diff:+7.1f} ms   ratio {a['median_ms'] / b['median_ms']:.2f}")
    finally:
        d.close()
        client.close()


async def _warm_body(d: Deployment, session: aiohttp.ClientSession) -> str:
    body = await _get_body(session, d.url + "/", "blog.test")
    assert body, "the site did not answer"
    await bare_docker_start(d, session, body)
    return body


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image", default="dialup-example-static:latest")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.image))
    sys.exit(0)
