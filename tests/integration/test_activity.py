"""Activity through the real Caddy: requests move a site's rate and last-request age in `dialup status`, from
Caddy's per-host metrics (the default) and from its access log; hosts with a port and wildcard hosts count; a
Caddy that restarts (its counters back at zero) loses no later request."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import site, until

STATIC_BODY = "static test site\n"


async def get(s: aiohttp.ClientSession, d: Any, host: str) -> None:
    async with s.get(d.url, headers={"Host": host}) as r:
        assert (r.status, await r.text()) == (200, STATIC_BODY)


async def row(d: Any, name: str) -> dict[str, Any]:
    return (await d.status())[name]  # type: ignore[no-any-return]


async def counted(d: Any, name: str, at_least: float) -> None:
    async def enough() -> bool:
        return float((await row(d, name))["requests_per_minute"]) >= at_least

    await until(enough, 10, f"{at_least:g} requests counted for {name}")


@pytest.mark.parametrize("source", ["metrics", "log"])
async def test_requests_through_caddy_move_the_rate_and_the_last_request_age(deploy, images, source):
    d = await deploy([site("blog", images["static"], idle_timeout="off")], activity=source, reaper_interval="250ms")
    async with aiohttp.ClientSession() as s:
        await get(s, d, "blog.test")  # a cold start: held by the activator, then the route switches
        await d.wait_routed("blog")
        before = float((await row(d, "blog"))["requests_per_minute"])
        for _ in range(10):
            await get(s, d, "blog.test")  # warm: Caddy straight to the container
    await counted(d, "blog", before + 10)
    first = await row(d, "blog")
    assert first["last_request_age_s"] is not None and first["last_request_age_s"] < 2.0
    await asyncio.sleep(1.5)
    later = await row(d, "blog")
    assert later["last_request_age_s"] >= first["last_request_age_s"] + 1.0  # no request since: it ages
    assert later["requests_per_minute"] == first["requests_per_minute"]


async def test_hosts_with_a_port_and_wildcard_hosts_count_for_their_site(deploy, images):
    d = await deploy(
        [
            site("blog", images["static"], idle_timeout="off"),
            site("wild", images["static"], hosts=["*.wild.test"], idle_timeout="off"),
        ],
        reaper_interval="250ms",
    )
    async with aiohttp.ClientSession() as s:
        for name, host in (("blog", "blog.test"), ("wild", "a.wild.test")):
            await get(s, d, host)
            await d.wait_routed(name)
        await asyncio.sleep(0.6)  # a read after the last route switch: what follows is counted from it
        rates = {name: float((await row(d, name))["requests_per_minute"]) for name in ("blog", "wild")}
        for _ in range(3):
            await get(s, d, f"blog.test:{d.http_port}")  # a browser's Host, on a port other than 80
            await get(s, d, "BLOG.test")
            await get(s, d, "b.wild.test")  # Caddy cannot name it: "_other", the one wildcard site's
        async with s.get(d.url, headers={"Host": "nope.test"}) as r:
            assert r.status == 404  # an unknown host counts for nobody
    await counted(d, "blog", rates["blog"] + 6)
    await counted(d, "wild", rates["wild"] + 3)
    await asyncio.sleep(0.6)
    assert float((await row(d, "wild"))["requests_per_minute"]) == rates["wild"] + 3


async def test_a_restarted_caddy_starts_its_counters_from_zero_and_later_requests_count(deploy, images):
    d = await deploy([site("blog", images["static"], idle_timeout="off")], reaper_interval="250ms")
    async with aiohttp.ClientSession() as s:
        await get(s, d, "blog.test")
        await d.wait_routed("blog")
        for _ in range(20):
            await get(s, d, "blog.test")
        await counted(d, "blog", 20)
        pid = int((d.dir / "state" / "system" / "caddy.pid").read_text())
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> bool:
            return any(e["kind"] == "caddy_restarted" for e in await d.events())

        await until(restarted, 20, "the managed Caddy to be started again")
        await d.wait_routed("blog")
        rate = float((await row(d, "blog"))["requests_per_minute"])
        for _ in range(5):  # fewer than before the restart: a counter that went back, read as a restart
            await get(s, d, "blog.test")
    await counted(d, "blog", rate + 5)
