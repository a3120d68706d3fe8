"""The cold-start path through real Caddy and real Docker (invariants 1, 2 and 4 of DESIGN.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any

import aiohttp

from tests.integration.harness import site, until

STATIC_BODY = "static test site\n"


async def get(d: Any, host: str, path: str = "/", **kw: Any) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.get(d.url + path, headers={"Host": host}, **kw) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_cold_request_is_answered_by_the_site_then_served_without_the_activator(deploy, images):
    d = await deploy([site("blog", images["static"])])
    assert d.container("blog").status == "created"

    status, body, _ = await get(d, "blog.test")
    assert (status, body) == (200, STATIC_BODY)
    d.container("blog").reload()
    assert d.container("blog").status == "running"

    await d.wait_routed("blog")
    forwarded = await d.metric("dialup_edge_requests_total", site="blog")
    for _ in range(5):
        assert (await get(d, "blog.test"))[:2] == (200, STATIC_BODY)
    assert await d.metric("dialup_edge_requests_total", site="blog") == forwarded, "warm requests hit the activator"


async def test_200_concurrent_requests_start_the_container_once(deploy, images):
    d = await deploy([site("burst", images["static"])])
    since = time.time() - 1
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def one() -> tuple[int, str]:
            async with s.get(d.url, headers={"Host": "burst.test"}) as r:
                return r.status, await r.text()

        results = await asyncio.gather(*(one() for _ in range(200)))
    assert results == [(200, STATIC_BODY)] * 200
    assert d.starts("burst", since) == 1
    assert (await d.status())["burst"]["state"] == "running"


async def test_a_1mb_post_body_arrives_intact_through_the_hold(deploy, images):
    d = await deploy([site("echo", images["pyapp"], kind="node")])
    body = os.urandom(1024 * 1024)
    async with aiohttp.ClientSession() as s, s.post(d.url + "/echo", data=body, headers={"Host": "echo.test"}) as r:
        assert r.status == 200
        info = json.loads(await r.text())
    assert info["method"] == "POST"
    assert info["length"] == len(body)
    assert info["sha256"] == hashlib.sha256(body).hexdigest()
    # The app sees the client's Host and the forwarding headers Caddy set, cold as warm.
    assert info["headers"]["host"] == "echo.test"
    assert info["headers"]["x-forwarded-for"] == "127.0.0.1"


async def test_a_streamed_response_arrives_intact_and_streams_through_the_hold(deploy, images):
    d = await deploy([site("stream", images["pyapp"], kind="node")])
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + "/stream", headers={"Host": "stream.test"}) as r:
            assert r.status == 200
            # The app sends its second part only after /release: reading the first part proves the
            # response streams through Caddy and the activator instead of being buffered whole.
            first = await asyncio.wait_for(r.content.readline(), 20)
            assert first == b"first:" + b"a" * 4096 + b"\n"
            # A new connection that reaches Caddy 2.6 in the instant of a config reload can be reset (README:
            # known limits); /release is sent once the route switch that follows the start is done.
            await d.wait_routed("stream")
            async with s.get(d.url + "/release", headers={"Host": "stream.test"}) as rel:
                assert rel.status == 200
            rest = await r.read()
    assert rest == b"second:" + b"b" * 65536 + b"\n"


async def test_a_websocket_opened_against_a_stopped_site_connects_and_echoes(deploy, images):
    d = await deploy([site("chat", images["pyapp"], kind="node")])
    async with aiohttp.ClientSession() as s, s.ws_connect(d.url + "/ws", headers={"Host": "chat.test"}) as ws:
        for text in ("hello", "x" * 70000, "bye"):
            await ws.send_str(text)
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, text)
        await ws.send_bytes(b"\x00\x01binary")
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.data == b"\x00\x01binary"


async def test_unknown_host_is_404_and_touches_no_container(deploy, images):
    d = await deploy([site("known", images["static"])])
    calls = await d.metric("dialup_docker_calls_total")
    status, body, _ = await get(d, "nobody.test")
    assert status == 404 and "unknown host" in body
    # Straight at the activator too (as when Caddy's route falls back to it).
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{d.listen_port}/", headers={"Host": "nobody.test"}) as r,
    ):
        assert r.status == 404
    assert await d.metric("dialup_docker_calls_total") == calls
    d.container("known").reload()
    assert d.container("known").status == "created"


async def test_a_container_that_exits_at_once_gets_a_fast_503_with_the_reason(deploy, images):
    d = await deploy([site("broken", images["broken"], start_timeout="30s")])
    began = time.monotonic()
    status, body, headers = await get(d, "broken.test")
    elapsed = time.monotonic() - began
    assert status == 503
    assert "Retry-After" in headers
    assert "exited with code 3" in body and body.count("\n") == 1, "the reason is one line"
    assert elapsed < 2, f"the failure took {elapsed:.2f}s to report; it must not wait for start_timeout"
    # The app's log line is for the operator, never for an anonymous client.
    assert "cannot read /app/config.json" not in body
    result = await asyncio.to_thread(d.command, "status", "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [r for r in json.loads(result.stdout)["sites"] if r["name"] == "broken"]
    assert "exited with code 3: fatal: cannot read /app/config.json" in row["last_failure"]


async def test_a_site_slower_than_its_start_timeout_gets_503_with_retry_after(deploy, images):
    d = await deploy([site("sloth", images["slow"], start_timeout="1s", env={"BOOT_DELAY": "20"})])
    status, body, headers = await get(d, "sloth.test")
    assert status == 503
    assert headers.get("Retry-After", "").isdigit()
    assert "start_timeout" in body


async def test_running_sites_keep_serving_when_the_activator_is_killed(deploy, images):
    d = await deploy([site("steady", images["static"])])
    assert (await get(d, "steady.test"))[:2] == (200, STATIC_BODY)
    await d.wait_routed("steady")
    d.kill()
    async with aiohttp.ClientSession() as s:
        for _ in range(50):
            async with s.get(d.url, headers={"Host": "steady.test"}) as r:
                assert (r.status, await r.text()) == (200, STATIC_BODY)


async def test_a_persistent_site_is_started_with_the_activator(deploy, images):
    d = await deploy([site("home", images["static"], strategy="persistent")])
    await until(lambda: _running(d, "home"), 20, "the persistent site to run")
    await d.wait_routed("home")
    calls = await d.metric("dialup_edge_requests_total", site="home")
    assert (await get(d, "home.test"))[:2] == (200, STATIC_BODY)
    assert await d.metric("dialup_edge_requests_total", site="home") == calls


def _running(d: Any, name: str) -> bool:
    c = d.container(name)
    c.reload()
    return c.status == "running"


async def test_beyond_max_waiting_requests_get_an_immediate_503(deploy, images):
    d = await deploy([site("queue", images["slow"], max_waiting=5, env={"BOOT_DELAY": "2"})])
    async with aiohttp.ClientSession() as s:

        async def one() -> tuple[int, str, str]:
            async with s.get(d.url, headers={"Host": "queue.test"}) as r:
                return r.status, await r.text(), r.headers.get("Retry-After", "")

        held = [asyncio.ensure_future(one()) for _ in range(5)]

        async def five_waiting() -> bool:
            return await d.metric("dialup_waiting_requests", site="queue") == 5

        await until(five_waiting, 10, "five held requests")
        status, body, retry = await one()
        assert status == 503 and retry.isdigit() and "already waiting" in body
        assert [r[:2] for r in await asyncio.gather(*held)] == [(200, "slow test site\n")] * 5


async def test_a_missing_image_gets_a_503_naming_it(deploy, images):
    d = await deploy([site("ghost", "dialup-test-never-built:latest")])
    status, body, headers = await get(d, "ghost.test")
    assert status == 503 and "Retry-After" in headers
    assert "dialup-test-never-built:latest" in body


async def test_sigterm_stops_the_activator_cleanly_and_leaves_sites_running(deploy, images):
    d = await deploy([site("keep", images["static"])])
    assert (await get(d, "keep.test"))[:2] == (200, STATIC_BODY)
    await d.wait_routed("keep")
    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0
    assert _running(d, "keep")
    assert (await get(d, "keep.test"))[:2] == (200, STATIC_BODY)


async def test_status_reports_starts_and_their_duration_from_the_event_log(deploy, images):
    d = await deploy([site("counted", images["static"]), site("idle", images["static"])])
    assert (await get(d, "counted.test"))[0] == 200

    def status() -> dict[str, Any]:
        result = d.command("status", "--json")
        assert result.returncode == 0, result.stderr
        return {row["name"]: row for row in json.loads(result.stdout)["sites"]}

    rows = await until(lambda: (r := status())["counted"]["starts"] == 1 and r, 10, "the start event")
    assert rows["counted"]["state"] == "running" and rows["counted"]["last_start_ms"] > 0
    assert rows["counted"]["memory_limit"] == 64 * 1024 * 1024
    assert rows["idle"]["state"] == "stopped" and rows["idle"]["starts"] == 0
    table = d.command("status").stdout
    assert "counted" in table and "running" in table and "64MiB" in table
