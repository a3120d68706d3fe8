"""Deployments the benchmarks share."""

from __future__ import annotations

from typing import Any

import aiohttp
import docker

from tests.integration.harness import Deployment, site


async def running_sites(client: docker.DockerClient, count: int, image: str, **server: Any) -> Deployment:
    """A started activator with `count` sites (s0, s1, ...), each started by one request and kept running."""
    d = Deployment(client, [site(f"s{i}", image, idle_timeout="off") for i in range(count)], **server)
    await d.start()
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            async with session.get(d.url, headers={"Host": f"s{i}.test"}) as r:
                assert r.status == 200, await r.text()
    return d
