"""Caddy 2.11 in front, with the real Docker Engine: an activator or a Caddy killed loses nothing, bodies are
bounded and streamed, and what works warm works cold."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from activator.proxy.process import bundled_binary
from tests.integration.harness import free_port, site, until

STATIC_BODY = "static test site\n"
MiB = 1 << 20


async def get(d: Any, host: str, path: str = "/", **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(d.url + path, headers={"Host": host, **headers}) as r:
        return r.status, await r.text()


async def post_echo(d: Any, host: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST to the test app's /echo: its status, and what it says it received."""
    async with aiohttp.ClientSession() as s, s.post(f"{d.url}/echo", data=body, headers={"Host": host}) as r:
        text = await r.text()
        return r.status, json.loads(text) if r.status == 200 else {"body": text}


def gone(pid: int) -> bool:
    """Exited: reaped, or a zombie its parent (init, once dialup that started it is gone) has yet to reap."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def caddy_pid(d: Any) -> int:
    return int((d.dir / "state" / "system" / "caddy.pid").read_text().strip())


async def test_an_activator_killed_and_restarted_loses_no_request(deploy, images):
    sites = [site(name, images["pyapp"], kind="node") for name in ("run", "cold1", "cold2")]
    d = await deploy(sites)
    assert (await get(d, "run.test", "/echo"))[0] == 200
    await d.wait_routed("run")
    body = os.urandom(20_000)
    digest = hashlib.sha256(body).hexdigest()
    failures: list[str] = []
    done = asyncio.Event()

    async def steady(method: str) -> int:
        """Requests back to back to the running site, through it all."""
        count = 0
        while not done.is_set():
            try:
                if method == "GET":
                    status, _ = await get(d, "run.test", "/echo")
                else:
                    status, info = await post_echo(d, "run.test", body)
                    assert status != 200 or info["sha256"] == digest
            except (aiohttp.ClientError, AssertionError) as exc:
                failures.append(f"{method} run.test: {exc!r}")
                continue
            if status != 200:
                failures.append(f"{method} run.test: {status}")
            count += 1
        return count

    clients = [asyncio.ensure_future(steady(m)) for m in ("GET", "POST", "GET", "POST")]
    await asyncio.sleep(0)
    d.kill()  # SIGKILL: no goodbye
    # Requests for stopped sites while the activator is down wait in Caddy, which keeps trying it.
    cold = [
        asyncio.ensure_future(get(d, "cold1.test", "/echo")),
        asyncio.ensure_future(post_echo(d, "cold2.test", body)),
        asyncio.ensure_future(get(d, "cold2.test", "/echo")),
    ]
    await d.start()  # back (systemd would restart it as fast)
    (get1, _), (post2, info), (get2, _) = await asyncio.gather(*cold)
    assert (get1, post2, get2) == (200, 200, 200) and info["sha256"] == digest
    done.set()
    served = await asyncio.gather(*clients)
    assert failures == [] and all(served)


async def test_a_killed_caddy_is_started_again_with_its_config(deploy, images):
    d = await deploy([site("blog", images["static"]), site("app", images["static"])])
    assert await get(d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    before = caddy_pid(d)
    os.kill(before, signal.SIGKILL)

    async def serving() -> bool:
        try:
            return await get(d, "blog.test") == (200, STATIC_BODY) and caddy_pid(d) != before
        except (aiohttp.ClientError, OSError, ValueError):
            return False

    await until(serving, 10, "a new Caddy serving the running site")
    assert await get(d, "app.test") == (200, STATIC_BODY)  # and the stopped one, through the activator
    status = await d.admin_json("/status")
    assert status["caddy"]["managed"] and status["caddy"]["up"] and status["caddy"]["restarts"] == 1
    assert [e["kind"] for e in await d.events("(caddy)")] == ["caddy_restarted"]


async def test_a_16k_cookie_that_works_warm_works_cold(deploy, images):
    d = await deploy([site("blog", images["static"])])
    cookie = "c=" + "x" * (16 * 1024 - 100)
    assert await get(d, "blog.test", Cookie=cookie) == (200, STATIC_BODY)  # cold: through the activator
    await d.wait_routed("blog")
    assert await get(d, "blog.test", Cookie=cookie) == (200, STATIC_BODY)  # warm: Caddy to the container


async def test_a_body_over_max_body_gets_413_and_one_under_it_arrives_whole(deploy, images):
    d = await deploy([site("app", images["pyapp"], kind="node", max_body="1MiB")])
    small = os.urandom(MiB // 2)
    status, info = await post_echo(d, "app.test", small)
    assert status == 200 and info["sha256"] == hashlib.sha256(small).hexdigest()
    status, _ = await post_echo(d, "app.test", os.urandom(2 * MiB))
    assert status == 413


async def test_an_upload_larger_than_the_buffer_streams_through_caddy(deploy, images, tmp_path):
    d = await deploy([site("app", images["pyapp"], kind="next")])  # the app holds the body: give it room
    assert (await get(d, "app.test", "/echo"))[0] == 200
    await d.wait_routed("app")
    size = 64 * MiB
    upload = tmp_path / "upload.bin"
    await asyncio.to_thread(upload.write_bytes, os.urandom(size))
    caddy = psutil.Process(caddy_pid(d))
    base = peak = caddy.memory_info().rss
    sending = True

    async def watch() -> None:
        nonlocal peak
        while sending:
            peak = max(peak, caddy.memory_info().rss)
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch())
    try:
        body = await asyncio.to_thread(upload.open, "rb")
        with body:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"{d.url}/echo", data=body, headers={"Host": "app.test"}) as r:
                    assert r.status == 200 and (await r.json())["length"] == size
    finally:
        sending = False
        await watcher
    # Streamed, not held: Caddy grew by a small part of the body, not by its size (as with unbounded buffers).
    assert peak - base < size // 4, f"Caddy grew by {(peak - base) / MiB:.0f} MiB for a {size // MiB} MiB upload"


async def test_a_caddy_that_dialup_does_not_manage_keeps_the_operators_own_sites(deploy, images, tmp_path):
    d = await deploy([site("blog", images["static"])], start=False, caddy={"manage": False})
    own = free_port()
    operator = {  # the operator's Caddy, with a site of its own, answering on the admin address dialup is given
        "admin": {"listen": f"unix/{d.caddy_socket}", "origins": ["localhost"]},
        "apps": {"http": {"servers": {"mine": {
            "listen": [f"127.0.0.1:{own}"],
            "routes": [{"handle": [{"handler": "static_response", "body": "the operator's own\n"}]}],
        }}}},
    }  # fmt: skip
    (tmp_path / "caddy.json").write_text(json.dumps(operator))
    command = [str(bundled_binary()), "run", "--config", str(tmp_path / "caddy.json")]
    caddy = await asyncio.to_thread(subprocess.Popen, command)
    try:
        await d.start()
        assert await get(d, "blog.test") == (200, STATIC_BODY)  # dialup's site, cold-started through it
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{own}/") as r:
            assert (r.status, await r.text()) == (200, "the operator's own\n")
        connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
        async with aiohttp.ClientSession(connector=connector) as s:
            async with s.get("http://localhost/config/apps/http/servers") as r:
                assert set(await r.json()) == {"mine", "dialup"}
            async with s.get("http://localhost/config/admin") as r:
                assert (await r.json())["listen"] == f"unix/{d.caddy_socket}"  # untouched
        assert (await d.admin_json("/status"))["caddy"] == {
            "managed": False,
            "up": True,
            "pid": None,
            "restarts": 0,
            "tcp_migrate_req": "on",
        }
    finally:
        caddy.terminate()
        await asyncio.to_thread(caddy.wait, 10)


async def test_websockets_stay_open_while_other_sites_start_and_stop(deploy, images):
    d = await deploy([site("chat", images["pyapp"], kind="node"), site("other", images["static"])])
    assert (await get(d, "chat.test", "/echo"))[0] == 200
    await d.wait_routed("chat")
    async with aiohttp.ClientSession() as s:
        sockets = [await s.ws_connect(f"{d.url}/ws", headers={"Host": "chat.test"}) for _ in range(3)]
        for _ in range(3):  # each a route switch there and back: files, not reloads
            assert await get(d, "other.test") == (200, STATIC_BODY)
            await d.wait_routed("other")
            await asyncio.to_thread(d.container("other").stop, timeout=1)
            await d.wait_route_on_activator("other")
        for i, ws in enumerate(sockets):
            await ws.send_str(f"still there {i}")
            assert (await ws.receive(timeout=5)).data == f"still there {i}"
            await ws.close()


async def test_text_is_compressed_unless_the_site_says_not_and_caddy_files_are_capped_and_follow_config(deploy, images):
    sites = [site("zip", images["pyapp"], kind="node"), site("raw", images["pyapp"], kind="node", compress=False)]
    d = await deploy(sites)
    pad = "x" * 2000  # the echo's JSON repeats the request's headers: over Caddy's 512-byte minimum
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        for name in ("zip", "raw"):
            headers = {"Host": f"{name}.test", "Accept-Encoding": "gzip", "X-Pad": pad}
            async with s.get(d.url + "/echo", headers=headers) as r:
                assert r.status == 200
                assert r.headers.get("Content-Encoding") == ("gzip" if name == "zip" else None)
    first = caddy_pid(d)
    limits = await asyncio.to_thread(Path(f"/proc/{first}/limits").read_text)
    assert re.search(r"Max open files\s+8448\s+8448", limits)  # max_connections 4096, two files each, plus 256
    # A cap Caddy took at its start reaches it when dialup next starts: that Caddy is stopped and started again.
    d.kill()
    d.config_path.write_text(d.render(d.sites, **{**d.server, "caddy": {"max_connections": 1000}}))
    await d.start()
    assert caddy_pid(d) != first and gone(first)
    limits = await asyncio.to_thread(Path(f"/proc/{caddy_pid(d)}/limits").read_text)
    assert re.search(r"Max open files\s+2256\s+2256", limits)
    assert "restarting Caddy: it was started with other max_connections than the config's" in d.log_path.read_text()
    assert (await get(d, "raw.test", "/echo"))[0] == 200
