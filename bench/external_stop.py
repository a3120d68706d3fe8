"""What a client sees while a site's container is stopped from outside (`docker stop`), per network mode.

    .venv/bin/python -m bench.external_stop [--runs 5] [--method GET|POST]

Runs its own `dialup up` with one site per network mode (the graceful test app, which finishes the responses
it is writing when stopped). Each run: 4 clients send requests back to back through Caddy, the site's
container is stopped from outside, and the clients go on until the site answered 50 more. Prints, per mode,
the answers by status, and connections Caddy reset while reloading (tried again, as a browser does).
Caddy 2.6 retries a GET on the activator after a failed round trip but not a POST: the difference between
the two methods is what the README's known limits describe.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import aiohttp
import docker

from tests.integration.harness import Deployment, site, until

GRACEFUL = "dialup-test-graceful:latest"


async def _one_run(d: Deployment, name: str, method: str) -> tuple[Counter[int], int]:
    statuses: Counter[int] = Counter()
    resets = 0
    stop = asyncio.Event()

    body = b"x" * 64 if method == "POST" else None

    async def client() -> None:
        nonlocal resets
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                try:
                    async with s.request(method, d.url, headers={"Host": f"{name}.test"}, data=body) as r:
                        await r.read()
                        statuses[r.status] += 1
                except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError):
                    resets += 1
                except aiohttp.ClientError:
                    statuses[0] += 1  # an answer cut short

    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": f"{name}.test"}) as r:
        assert r.status == 200
    await d.wait_routed(name)
    tasks = [asyncio.create_task(client()) for _ in range(4)]
    await until(lambda: sum(statuses.values()) >= 20, 20, "answers before the stop")
    since = time.time()
    await asyncio.to_thread(d.container(name).stop, timeout=5)
    await until(lambda: d.starts(name, since) >= 1, 20, "the site started again")
    target = sum(statuses.values()) + 50
    await until(lambda: sum(statuses.values()) >= target, 20, "answers after the stop")
    stop.set()
    await asyncio.gather(*tasks)
    return statuses, resets


async def main(runs: int, method: str) -> None:
    client = docker.from_env()
    modes = ("holder", "plain")
    d = Deployment(client, [site(m, GRACEFUL, idle_timeout="off", network=m) for m in modes])
    try:
        await d.start()
        totals = {m: (Counter[int](), [0]) for m in modes}
        for _ in range(runs):
            for mode in modes:
                statuses, resets = await _one_run(d, mode, method)
                totals[mode][0].update(statuses)
                totals[mode][1][0] += resets
        for mode, (statuses, resets) in totals.items():
            shown = ", ".join(f"{code or 'cut short'}: {n}" for code, n in sorted(statuses.items()))
            print(f"{method} {mode:<6} over {runs} external stops: {shown}; resets during reloads: {resets[0]}")
    finally:
        d.close()
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--method", default="GET", choices=["GET", "POST"])
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.method))
