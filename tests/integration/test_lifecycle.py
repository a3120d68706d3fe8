"""A site's life after its first start: idle stop, pause and wake, drains, crashes, restart adoption."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, started_at, until

STATIC_BODY = "static test site\n"
FAST = {"reaper_interval": "100ms"}


async def fetch(session: aiohttp.ClientSession, d: Any, host: str, path: str = "/") -> tuple[int, str]:
    async with session.get(d.url + path, headers={"Host": host}) as r:
        return r.status, await r.text()


async def state(d: Any, name: str) -> str:
    return str((await d.status())[name]["state"])


def _finished_at(container: Any) -> float:
    container.reload()
    text = container.attrs["State"]["FinishedAt"]  # RFC 3339 with nanoseconds
    return datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00").timestamp()


async def test_an_idle_site_stops_2_to_4_seconds_after_its_last_request(deploy, images):
    d = await deploy([site("blog", images["static"], idle_timeout="2s")], reaper_interval="250ms")
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
        await d.wait_routed("blog")
        last = time.time()
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)  # warm: counted by Caddy, not the activator
    await until(lambda: docker_status(d.container("blog")) == "exited", 10, "the idle site to stop")
    idle_for = _finished_at(d.container("blog")) - last
    assert 2.0 <= idle_for <= 4.0, idle_for
    assert await state(d, "blog") == "stopped"


async def test_a_request_every_half_second_keeps_the_site_up(deploy, images):
    d = await deploy([site("busy", images["static"], idle_timeout="2s")], reaper_interval="250ms")
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "busy.test") == (200, STATIC_BODY)
        first_start = started_at(d.container("busy"))
        for _ in range(12):  # the traffic pattern under test: one request every 0.5 s for 6 s
            await asyncio.sleep(0.5)
            assert await fetch(s, d, "busy.test") == (200, STATIC_BODY)
    assert docker_status(d.container("busy")) == "running"
    assert started_at(d.container("busy")) == first_start
    assert (await d.status())["busy"]["starts"] == 1


async def test_a_long_response_in_flight_keeps_the_site_up_until_it_ends(deploy, images):
    d = await deploy([site("slow", images["pyapp"], kind="node", idle_timeout="1s")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert (await fetch(s, d, "slow.test"))[0] == 200
        await d.wait_routed("slow")
        first_start = started_at(d.container("slow"))
        # 5 s on the wire, well past idle_timeout; in flight through Caddy straight to the container.
        assert await fetch(s, d, "slow.test", "/slow?s=5") == (200, "slept 5\n")
    assert started_at(d.container("slow")) == first_start
    await until(lambda: docker_status(d.container("slow")) == "exited", 10, "the site to stop once idle")


async def test_an_open_websocket_keeps_the_site_up_until_it_closes(deploy, images):
    d = await deploy([site("chat", images["pyapp"], kind="node", idle_timeout="1s")], **FAST)
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(d.url + "/ws", headers={"Host": "chat.test"}) as ws:
            await ws.send_str("hello")
            assert (await asyncio.wait_for(ws.receive(), 10)).data == "hello"

            async def idle_past_timeout() -> bool:
                row = (await d.status())["chat"]
                return row["in_flight"] >= 1 and (row["idle_s"] or 0) > 2.5

            await until(idle_past_timeout, 15, "the open WebSocket to outlast idle_timeout")
            assert docker_status(d.container("chat")) == "running"
            await ws.send_str("still here")
            assert (await asyncio.wait_for(ws.receive(), 10)).data == "still here"
    await until(lambda: docker_status(d.container("chat")) == "exited", 10, "the site to stop after the close")


async def test_requests_during_stop_and_start_cycles_all_get_the_real_body(deploy, images):
    d = await deploy([site("cycle", images["static"], idle_timeout="1s", stop_grace="1s")], **FAST)
    seen: set[str] = set()
    async with aiohttp.ClientSession() as s:
        for i in range(6):
            assert await fetch(s, d, "cycle.test") == (200, STATIC_BODY)
            # Every other time, catch it draining (the requests then keep it) or stopped; else wait until it has
            # stopped (the requests then start it again).
            down = ("draining", "stopped") if i % 2 else ("stopped",)

            async def going_down(down: tuple[str, ...] = down) -> str | None:
                current = await state(d, "cycle")
                return current if current in down else None

            seen.add(await until(going_down, 15, "the idle policy to take the site down"))
            # Back to back while it drains or stops: every answer is the site's own.
            for _ in range(20):
                assert await fetch(s, d, "cycle.test") == (200, STATIC_BODY)
    assert (await d.status())["cycle"]["starts"] >= 4, seen


async def test_pause_after_pauses_the_container_and_a_request_wakes_it(deploy, images):
    d = await deploy([site("nap", images["static"], pause_after="1s", idle_timeout="5m")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "nap.test") == (200, STATIC_BODY)
        first_start = started_at(d.container("nap"))
        await until(lambda: docker_status(d.container("nap")) == "paused", 10, "Docker to report it paused")
        assert await state(d, "nap") == "paused"
        assert await fetch(s, d, "nap.test") == (200, STATIC_BODY)
    assert docker_status(d.container("nap")) == "running"
    assert started_at(d.container("nap")) == first_start  # woken, not restarted
    row = (await d.status())["nap"]
    assert (row["starts"], row["wakes"]) == (1, 1)


async def test_a_killed_persistent_site_is_back_within_the_backoff_and_nothing_is_lost(deploy, images):
    d = await deploy([site("home", images["static"], strategy="persistent", restart_backoff="200ms")], **FAST)
    await until(lambda: docker_status(d.container("home")) == "running", 20, "the persistent site")
    await d.wait_routed("home")
    d.container("home").kill()
    await d.wait_route_on_activator("home")  # the crash is seen and routed around; it is still down
    async with aiohttp.ClientSession() as s:
        # Sent during the outage: held by the activator, answered once the site is back.
        results = await asyncio.gather(*(fetch(s, d, "home.test") for _ in range(20)))
    assert results == [(200, STATIC_BODY)] * 20
    await until(lambda: docker_status(d.container("home")) == "running", 10, "the restart")
    row = (await d.status())["home"]
    assert row["crashes"] == 1 and row["state"] == "running"


async def test_a_container_that_always_exits_is_failing_with_fast_503s_and_bounded_restarts(deploy, images):
    d = await deploy(
        [site("bad", images["broken"], strategy="persistent", restart_backoff="100ms", restart_backoff_max="400ms")],
        **FAST,
    )
    await until(lambda: state(d, "bad"), 1, "status")

    async def failing() -> bool:
        return await state(d, "bad") == "failing"

    await until(failing, 30, "the site to be marked failing")
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url, headers={"Host": "bad.test"}) as r:
            body = await r.text()
            assert r.status == 503 and r.headers["Retry-After"].isdigit()
    assert "failing" in body and "cannot read /app/config.json" not in body  # the log line: operator only
    assert "cannot read /app/config.json" in (await d.status())["bad"]["last_failure"]
    since = time.time()
    crashes = (await d.status())["bad"]["crashes"]

    async def more_crashes() -> bool:
        return (await d.status())["bad"]["crashes"] >= crashes + 2

    await until(more_crashes, 10, "two more restart attempts")
    window = time.time() - since
    # Restarts keep their backoff (at least 0.4 s apart now): a bounded number, not a tight loop.
    assert d.starts("bad", since) <= window / 0.4 + 2


async def test_a_restarted_activator_adopts_running_paused_and_stopped_sites_restarting_none(deploy, images):
    sites = [
        site("run", images["static"], idle_timeout="off"),
        site("nap", images["static"], pause_after="1s", idle_timeout="off"),
        site("off", images["static"], idle_timeout="1s"),
    ]
    d = await deploy(sites, **FAST)
    async with aiohttp.ClientSession() as s:
        for name in ("run", "nap", "off"):
            assert await fetch(s, d, f"{name}.test") == (200, STATIC_BODY)
            await d.wait_routed(name)  # a route switch reloads Caddy: let it finish before the next request
        await until(lambda: docker_status(d.container("nap")) == "paused", 10, "nap to pause")
        await until(lambda: docker_status(d.container("off")) == "exited", 10, "off to stop")
        before = {name: started_at(d.container(name)) for name in ("run", "nap", "off")}

        assert d.proc is not None
        d.proc.terminate()
        assert await asyncio.to_thread(d.proc.wait, 15) == 0
        await d.start()

        states = {name: row["state"] for name, row in (await d.status()).items()}
        assert states == {"run": "running", "nap": "paused", "off": "stopped"}
        assert {name: started_at(d.container(name)) for name in before} == before  # none restarted

        # The new activator counts warm requests again (from Caddy's metrics; with the log, once it reconnects).
        async def warm_requests_seen() -> bool:
            assert await fetch(s, d, "run.test") == (200, STATIC_BODY)
            return (await d.status())["run"]["requests_per_minute"] > 0

        await until(warm_requests_seen, 30, "warm requests to be counted again")
        for name in ("nap", "off"):
            assert await fetch(s, d, f"{name}.test") == (200, STATIC_BODY)


async def test_a_container_whose_site_left_the_config_is_removed(deploy, images, docker_client):
    d = await deploy([site("stay", images["static"]), site("gone", images["static"])])
    gone = d.container("gone").id
    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0
    d.config_path.write_text(d.render([site("stay", images["static"])], **d.server))
    await d.start()
    names = [c.id for c in docker_client.containers.list(all=True, filters={"label": f"dialup.deployment={d.name}"})]
    assert gone not in names and d.container("stay").id in names


async def test_a_lazy_site_stopped_from_outside_is_stopped_not_crashed_and_starts_again(deploy, images):
    d = await deploy([site("ext", images["static"], idle_timeout="off")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "ext.test") == (200, STATIC_BODY)
        await d.wait_routed("ext")
        await asyncio.to_thread(d.container("ext").stop, timeout=5)

        async def stopped() -> bool:
            return await state(d, "ext") == "stopped"

        await until(stopped, 10, "the activator to see the external stop")
        await d.wait_route_on_activator("ext")
        assert await fetch(s, d, "ext.test") == (200, STATIC_BODY)
    row = (await d.status())["ext"]
    assert (row["crashes"], row["starts"], row["state"]) == (0, 2, "running")
