"""The editor's HTTP side over real sockets (aiohttp's test server) and real SQLite: a token link opens a session
for its own site, the WebSocket speaks the sync protocol only with that session and the editor's Origin, and
a change made by someone else is pushed to the open tab."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiosqlite
import pytest
from aiohttp.test_utils import TestClient, TestServer

from activator.builds.releases import Release
from activator.editor.access import Access
from activator.editor.service import EditorSettings, make_editor_app

HOST = "editor.example.com"
ORIGIN = {"Origin": f"https://{HOST}"}


@pytest.fixture
async def editor(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Access, Path]]:
    (tmp_path / "ws" / "blog").mkdir(parents=True)
    (tmp_path / "ws" / "blog" / "index.html").write_text("hello")
    async with aiosqlite.connect(tmp_path / "dialup.db") as db:
        access = Access(db)
        await access.open()
        settings = EditorSettings(HOST, tmp_path / "ws", frozenset({"blog", "shop"}), secure_cookie=False)
        client = TestClient(TestServer(make_editor_app(settings, access)))
        await client.start_server()
        try:
            yield client, access, tmp_path / "ws" / "blog"
        finally:
            await client.close()


async def answer(ws: aiohttp.ClientWebSocketResponse, ident: int) -> dict[str, object]:
    """The answer to request `ident` (pushes of changes may come between)."""
    while True:
        message = await ws.receive_json(timeout=5)
        if message.get("id") == ident:
            return dict(message)


async def logged_in(client: TestClient, access: Access, site: str = "blog") -> None:
    token = await access.issue_token(site, now=time.time(), ttl=600)
    r = await client.get(f"/sites/{site}/login", params={"token": token}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == f"/sites/{site}/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and f"Path=/sites/{site}/" in cookie


async def test_wrong_tokens_and_sessions_get_the_same_401(editor: tuple[TestClient, Access, Path]) -> None:
    client, access, _ = editor
    shop_token = await access.issue_token("shop", now=time.time(), ttl=600)
    for path, params in (
        ("/sites/blog/login", {"token": "nope"}),
        ("/sites/blog/login", {"token": shop_token}),  # another site's token
        ("/sites/nosuchsite/login", {"token": shop_token}),
        ("/sites/blog/ws", {}),
    ):
        r = await client.get(path, params=params, allow_redirects=False)
        assert r.status == 401 and await r.text() == "unauthorized\n"


async def test_a_session_speaks_the_protocol_from_the_editors_origin_only(
    editor: tuple[TestClient, Access, Path],
) -> None:
    client, access, root = editor
    await logged_in(client, access)
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/sites/blog/ws", headers={"Origin": "https://evil.example.com"})
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/sites/shop/ws", headers=ORIGIN)  # the session is blog's, not shop's
    async with client.ws_connect("/sites/blog/ws", headers=ORIGIN) as ws:
        await ws.send_json({"id": 1, "op": "open", "path": "index.html"})
        opened = await answer(ws, 1)
        assert opened["content"] == "hello"
        await ws.send_json({"id": 2, "op": "write", "path": "index.html", "content": "typed", "base": opened["hash"]})
        assert (await answer(ws, 2))["ok"] is True
        assert (root / "index.html").read_text() == "typed"
        (root / "style.css").write_text("a{}")  # the dev server, a formatter, another tab
        pushes = [await ws.receive_json(timeout=5)]
        while pushes[-1] != {"op": "changed", "path": "style.css"}:  # (its own save is pushed too)
            pushes.append(await ws.receive_json(timeout=5))


async def test_the_page_allows_only_its_own_scripts_and_its_sites_preview(
    editor: tuple[TestClient, Access, Path],
) -> None:
    client, access, _ = editor
    await logged_in(client, access)
    r = await client.get("/sites/blog/")
    assert r.status == 200
    policy = r.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-src https://blog-dev.localhost/" in policy
    assert "script-src" not in policy and "<script>" not in await r.text()  # no inline script, none elsewhere
    assert 'data-preview-kind="files"' in await r.text()  # no development container: reloaded at once


async def test_used_and_expired_tokens_get_the_same_401_over_http(tmp_path: Path) -> None:
    (tmp_path / "ws" / "blog").mkdir(parents=True)
    now = [1_800_000_000.0]
    async with aiosqlite.connect(tmp_path / "dialup.db") as db:
        access = Access(db)
        await access.open()
        settings = EditorSettings(HOST, tmp_path / "ws", frozenset({"blog"}), secure_cookie=True)
        client = TestClient(TestServer(make_editor_app(settings, access, clock=lambda: now[0])))
        await client.start_server()
        try:
            token = await access.issue_token("blog", now=now[0], ttl=600)
            r = await client.get("/sites/blog/login", params={"token": token}, allow_redirects=False)
            assert r.status == 303 and "Secure" in r.headers["Set-Cookie"].split("; ")  # over HTTPS only
            r = await client.get("/sites/blog/login", params={"token": token}, allow_redirects=False)
            assert (r.status, await r.text()) == (401, "unauthorized\n")  # used once already
            late = await access.issue_token("blog", now=now[0], ttl=600)
            now[0] += 601
            r = await client.get("/sites/blog/login", params={"token": late}, allow_redirects=False)
            assert (r.status, await r.text()) == (401, "unauthorized\n")  # expired
        finally:
            await client.close()


async def test_a_deploy_from_another_origin_or_none_is_refused(tmp_path: Path) -> None:
    # SameSite=Strict does not stop a friend's site on the same domain: the Origin check does.
    (tmp_path / "ws" / "blog").mkdir(parents=True)

    def deploy(site: str, say: object, folder: Path) -> asyncio.Task[Release]:
        raise AssertionError("a refused deploy must never start")

    async with aiosqlite.connect(tmp_path / "dialup.db") as db:
        access = Access(db)
        await access.open()
        settings = EditorSettings(HOST, tmp_path / "ws", frozenset({"blog"}), secure_cookie=False)
        client = TestClient(TestServer(make_editor_app(settings, access, deploy)))
        await client.start_server()
        try:
            await logged_in(client, access)
            for headers in ({"Origin": "https://blog.example.com"}, {}):  # a friend's site, or no Origin at all
                r = await client.post("/sites/blog/deploy", headers=headers)
                assert (r.status, await r.text()) == (401, "unauthorized\n"), headers
        finally:
            await client.close()


async def test_open_tabs_are_closed_at_shutdown_at_once(editor: tuple[TestClient, Access, Path]) -> None:
    client, access, _ = editor
    await logged_in(client, access)
    ws = await client.ws_connect("/sites/blog/ws", headers=ORIGIN)
    began = time.monotonic()
    await client.server.runner.shutdown()  # (what cleanup() runs first)
    message = await ws.receive(timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001  # going away: the page reconnects
    assert time.monotonic() - began < 5
