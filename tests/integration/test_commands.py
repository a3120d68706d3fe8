"""The `dialup` commands around a deployment: `down`, a second `up`, and the hosts the activator answers for."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, until

STATIC_BODY = "static test site\n"
FAST = {"reaper_interval": "100ms"}


async def get(d: Any, host: str, path: str = "/") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(d.url + path, headers={"Host": host}) as r:
        return r.status, await r.text()


async def stop_activator(d: Any) -> None:
    """What Ctrl-C does: the activator exits and leaves Caddy and the sites as they are."""
    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0


async def test_down_stops_a_paused_site_and_its_holder(deploy, images):
    d = await deploy([site("nap", images["static"], pause_after="500ms", idle_timeout="off")], **FAST)
    assert await get(d, "nap.test") == (200, STATIC_BODY)
    await until(lambda: docker_status(d.container("nap")) == "paused", 15, "the idle site to be paused")
    await stop_activator(d)
    assert docker_status(d.container("nap")) == "paused" and docker_status(d.holder("nap")) == "running"

    result = await asyncio.to_thread(d.command, "down")
    assert result.returncode == 0, result.stderr
    assert docker_status(d.container("nap")) == "exited"
    assert docker_status(d.holder("nap")) == "exited"
