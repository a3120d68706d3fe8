"""The editor through the real Caddy and `dialup up`: a login link from `dialup editor-token`, the sync protocol
over a WebSocket through Caddy, the static preview showing a save at once, and a deploy of the workspace
making it the live site."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.integration.harness import Deployment, free_port, until


async def test_edit_preview_and_deploy_a_static_site_through_caddy(deploy: Any) -> None:
    d: Deployment = await deploy(
        [{"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}],
        start=False,
        builds={"source_roots": ["sources"]},
        editor={
            "host": "editor.localhost",
            "listen": f"127.0.0.1:{free_port()}",
            "preview_host": "{site}-dev.localhost",
        },
    )
    (d.dir / "sources" / "blog").mkdir(parents=True)
    (d.dir / "sources" / "blog" / "index.html").write_text("as deployed")
    await d.start()
    editor = {"Host": f"editor.localhost:{d.http_port}"}
    origin = {"Origin": f"http://editor.localhost:{d.http_port}"}

    async def body(host: str) -> str:
        async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
            return await r.text() if r.status == 200 else f"({r.status})"

    async def deployed() -> bool:
        return await body("blog.localhost") == "as deployed"

    await until(deployed, 30, "the first release")

    made = await asyncio.to_thread(d.command, "editor-token", "blog")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith(f"http://editor.localhost:{d.http_port}/sites/blog/login?token=")
    path = link.partition(str(d.http_port))[2]
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + path, headers=editor, allow_redirects=False) as r:
            assert r.status == 303
            cookie = r.headers["Set-Cookie"].partition(";")[0]
        headers = {**editor, **origin, "Cookie": cookie}
        async with s.ws_connect(d.url + "/sites/blog/ws", headers=headers) as ws:
            await ws.send_json({"id": 1, "op": "open", "path": "index.html"})
            opened = await _answer(ws, 1)
            assert opened["content"] == "as deployed"  # the workspace was made from the site's source
            await ws.send_json(
                {"id": 2, "op": "write", "path": "index.html", "content": "edited", "base": opened["hash"]}
            )
            assert (await _answer(ws, 2))["ok"] is True
        assert await body(f"blog-dev.localhost:{d.http_port}") == "edited"  # the preview: at once
        assert await body("blog.localhost") == "as deployed"  # production: not before a deploy
        async with s.post(d.url + "/sites/blog/deploy", headers=headers) as r:
            lines = [json.loads(line) for line in (await r.text()).splitlines()]
        assert lines[-1] == {"step": "result", "ok": True, "release": "r2"}, lines
    assert await body("blog.localhost") == "edited"


async def _answer(ws: aiohttp.ClientWebSocketResponse, ident: int) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=5)
        if message.get("id") == ident:
            return dict(message)
