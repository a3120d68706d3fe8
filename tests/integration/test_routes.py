"""Routes kept to what is wanted, with the real Caddy; and a stop from outside during a start, with the real
Docker Engine."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, until

STATIC_BODY = "static test site\n"


async def caddy(d: Any, method: str, path: str, body: Any = None) -> Any:
    connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
    url = f"http://localhost{path}"
    async with aiohttp.ClientSession(connector=connector) as s, s.request(method, url, json=body) as r:
        assert r.status < 400, await r.text()
        text = await r.text()
        return await r.json() if text.strip() else None


async def fetch(d: Any, host: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
        return r.status, await r.text()


async def test_a_route_changed_behind_the_activators_back_is_put_right_and_status_shows_it(deploy, images):
    d = await deploy([site("blog", images["static"])])
    assert await fetch(d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    port = (await d.status())["blog"]["host_port"]
    assert (await d.status())["blog"]["route"] == f"127.0.0.1:{port}"

    d.route_file("blog").write_text("127.0.0.1:9\n")  # someone else's change: a port where nothing listens

    async def put_right() -> bool:
        await d.status()  # each status reads the routes back
        return d.route_file("blog").read_text().strip() == f"127.0.0.1:{port}"

    await until(put_right, 15, "the activator to put Caddy's route back on the container")
    assert (await d.status())["blog"]["route"] == f"127.0.0.1:{port}"
    assert await fetch(d, "blog.test") == (200, STATIC_BODY)


async def test_a_caddy_that_lost_its_config_gets_it_back(deploy, images):
    d = await deploy([site("blog", images["static"])])
    assert await fetch(d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    admin = await caddy(d, "GET", "/config/admin")
    await caddy(d, "POST", "/load", {"admin": admin})  # as a restarted Caddy: nothing but its admin API

    async def serving() -> bool:
        await d.status()
        try:
            return await fetch(d, "blog.test") == (200, STATIC_BODY)
        except aiohttp.ClientError:
            return False

    await until(serving, 20, "Caddy to be given the sites' routes again")
    assert (await d.status())["blog"]["routed"]


async def test_a_stop_from_outside_during_a_start_gives_the_held_requests_the_site(deploy, images, docker_client):
    d = await deploy([site("slow", images["slow"], env={"BOOT_DELAY": "2"})])
    held = [asyncio.ensure_future(fetch(d, "slow.test")) for _ in range(5)]
    await until(lambda: docker_status(d.container("slow")) == "running", 15, "the slow site to be booting")
    await asyncio.to_thread(d.container("slow").stop, timeout=1)  # exits with 143 while it boots

    answers = await asyncio.gather(*held)
    assert answers == [(200, "slow test site\n")] * 5
    status = (await d.status())["slow"]
    assert status["crashes"] == 0 and status["state"] == "running"
    kinds = [(e["kind"], e["cause"]) for e in await d.events("slow")]
    assert ("stopped", "external") in kinds and not [k for k, _ in kinds if k in ("crash", "start_failed")]
