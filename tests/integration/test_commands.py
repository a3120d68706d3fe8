"""The `dialup` commands around a deployment: `down`, a second `up`, and the hosts the activator answers for."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp

from tests.integration.harness import ROOT, docker_status, site, started_at, until

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


async def caddy_config(d: Any) -> Any:
    connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
    async with aiohttp.ClientSession(connector=connector) as s, s.get("http://localhost/config/") as r:
        assert r.status == 200
        return await r.json()


async def test_a_second_up_on_the_same_state_directory_exits_and_changes_nothing(deploy, images):
    d = await deploy([site("blog", images["static"]), site("home", images["static"], strategy="persistent")])
    assert await get(d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    await until(lambda: docker_status(d.container("home")) == "running", 20, "the persistent site")
    await d.wait_routed("home")
    made = [d.container("blog"), d.holder("blog"), d.container("home"), d.holder("home")]
    started = [started_at(c) for c in made]
    config = await caddy_config(d)

    command = [sys.executable, "-m", "activator.cli", "up", "-c", str(d.config_path)]
    second = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert second.returncode == 1, second.stderr
    lock = d.dir / "state" / "system" / "dialup.lock"
    assert d.proc is not None
    assert second.stderr.startswith("dialup: ") and str(lock) in second.stderr and f"pid {d.proc.pid}" in second.stderr

    assert d.proc.poll() is None, "the first activator is still running"
    assert await get(d, "blog.test") == (200, STATIC_BODY)
    assert set(await d.status()) == {"blog", "home"}  # its admin socket is still there
    assert [started_at(c) for c in made] == started, "no container was restarted"
    assert [docker_status(c) for c in made] == ["running"] * 4
    assert await caddy_config(d) == config


async def test_a_wildcard_host_is_cold_started_for_one_label_only(deploy, images):
    d = await deploy([{**site("wild", images["static"]), "hosts": ["*.wild.test"]}])
    # More than one label, or none, is not the site's: a 404 that touches no container.
    assert (await get(d, "a.b.wild.test"))[0] == 404
    assert (await get(d, "wild.test"))[0] == 404
    assert docker_status(d.container("wild")) == "created"

    assert await get(d, "blog.wild.test") == (200, STATIC_BODY)
    assert docker_status(d.container("wild")) == "running"
    await d.wait_routed("wild")
    assert await get(d, "Other.Wild.Test") == (200, STATIC_BODY)
    assert (await get(d, "a.b.wild.test"))[0] == 404
