"""The editor through the real Caddy and `dialup up`: a login link from `dialup editor-token`, the sync protocol
over a WebSocket through Caddy, the static preview showing a save at once, and a deploy of the workspace
making it the live site."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp

from tests.integration.harness import Deployment, editor_table, until


async def test_edit_preview_and_deploy_a_static_site_through_caddy(deploy: Any) -> None:
    blog = {"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}
    d: Deployment = await deploy(
        [blog],
        start=False,
        builds={"source_roots": ["sources"]},
        editor=editor_table(),
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
    # The workspace was made from the source at startup: its preview answers before the editor first opens it.
    assert await body(f"blog-dev.localhost:{d.http_port}") == "as deployed"

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

    # A site added by a reload is editable at once (no restart), its preview made from its source.
    (d.dir / "sources" / "wiki").mkdir()
    (d.dir / "sources" / "wiki" / "index.html").write_text("wiki")
    d.config_path.write_text(
        d.render([blog, {**blog, "name": "wiki", "hosts": ["wiki.localhost"], "source": "sources/wiki"}], **d.server)
    )
    done = await asyncio.to_thread(d.command, "reload")
    assert done.returncode == 0, done.stderr
    made = await asyncio.to_thread(d.command, "editor-token", "wiki")
    assert made.returncode == 0, made.stderr
    async with aiohttp.ClientSession() as s:
        path = made.stdout.strip().partition(str(d.http_port))[2]
        async with s.get(d.url + path, headers=editor, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
    assert await body(f"wiki-dev.localhost:{d.http_port}") == "wiki"


async def _answer(ws: aiohttp.ClientWebSocketResponse, ident: int) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=5)
        if message.get("id") == ident:
            return dict(message)


NODE_APP = {
    "package.json": json.dumps(
        {"name": "app", "version": "1.0.0", "scripts": {"start": "node server.js"}, "dependencies": {"lib": "file:lib"}}
    ),
    # A dependency npm installs with no registry: a folder of the app's own. (The production recipe installs
    # packages before it copies the app, so this app has no release: the development container needs none.)
    "lib/package.json": json.dumps({"name": "lib", "version": "1.0.0"}),
    "lib/index.js": 'module.exports = " with lib";\n',
    "server.js": 'const lib = require("lib");\n'
    'require("http").createServer((q, s) => s.end("v1" + lib)).listen(process.env.PORT);\n',
}


async def test_a_node_site_gets_a_development_container_with_its_workspace_live_at_the_preview(deploy: Any) -> None:
    from activator.builds.base_image import ensure_node_base

    base = await asyncio.to_thread(ensure_node_base, log=lambda line: None)  # made once per machine (minutes)
    d: Deployment = await deploy(
        [{"name": "app", "hosts": ["app.localhost"], "source": "sources/app", "kind": "node"}],
        start=False,
        builds={"source_roots": ["sources"], "node_image": base},
        editor=editor_table(idle_timeout="4s"),
    )
    (d.dir / "sources" / "app" / "lib").mkdir(parents=True)
    for name, text in NODE_APP.items():
        (d.dir / "sources" / "app" / name).write_text(text)
    await d.start()
    preview = f"app-dev.localhost:{d.http_port}"

    async def body(host: str) -> str:
        async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
            return await r.text() if r.status == 200 else f"({r.status})"

    # The development container is a site of kind `development`, made at startup like any site, stopped.
    dev = await asyncio.to_thread(d.container, "app-dev")
    config, host = dev.attrs["Config"], dev.attrs["HostConfig"]
    assert config["User"] == "1000:1000" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
    assert config["WorkingDir"] == "/app" and config["Labels"]["dialup.site"] == "app-dev"
    assert (host["Memory"], host["NanoCpus"], host["CpuShares"], host["PidsLimit"]) == (512 << 20, 25 * 10**7, 1024, 50)
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    binds = {m["Target"]: (m["Source"], m.get("ReadOnly", False)) for m in host["Mounts"]}
    workspace = d.dir / "state" / "dev-workspaces" / "app"
    assert binds["/app"] == (str(workspace), False)
    assert binds["/app/node_modules"] == (str(d.dir / "state" / "dev-cache" / "app"), False)
    assert (workspace / "server.js").read_text() == NODE_APP["server.js"]  # made from the site's source

    # Opening the site in the editor starts it (through the activator, as a preview request would).
    made = await asyncio.to_thread(d.command, "editor-token", "app")
    assert made.returncode == 0, made.stderr
    editor = {"Host": f"editor.localhost:{d.http_port}", "Origin": f"http://editor.localhost:{d.http_port}"}
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + made.stdout.strip().partition(str(d.http_port))[2], headers=editor,
                         allow_redirects=False) as r:  # fmt: skip
            cookie = r.headers["Set-Cookie"].partition(";")[0]
        async with s.ws_connect(d.url + "/sites/app/ws", headers={**editor, "Cookie": cookie}) as ws:

            async def running() -> bool:
                return await asyncio.to_thread(lambda: d.container("app-dev").status == "running")

            await until(running, 60, "the development container, started by the editor opening the site")
            assert await body(preview) == "v1 with lib"
            top = await asyncio.to_thread(dev.top, ps_args="-o pid,uid,args")
            assert all(row[1] != "0" for row in top["Processes"]), top  # no process of the dev server is root

            # Each save restarts the app (its folder is watched: a save renames a new file into place, twice
            # over here, which a watch of the file alone would miss the second time).
            version = (await _request(ws, {"op": "open", "path": "server.js"}))["hash"]
            for text in ("v2", "v3"):
                code = NODE_APP["server.js"].replace("v1", text)
                written = await _request(ws, {"op": "write", "path": "server.js", "content": code, "base": version})
                assert written["ok"], written
                version = written["hash"]

                async def shows(text: str = text) -> bool:
                    return await body(preview) == text + " with lib"

                await until(shows, 30, f"the preview showing {text}")

            # A file the dev server writes is the workspace's: the tab is told, and it belongs to its user.
            await asyncio.to_thread(dev.exec_run, ["sh", "-c", "echo made > /app/made.txt"], user="1000:1000")
            assert (await _push(ws))["path"] == "made.txt"
            assert (workspace / "server.js").stat().st_uid == (1000 if os.getuid() == 0 else os.getuid())

        # No edit and no preview request for [editor] idle_timeout: stopped, like an idle site.
        async def stopped() -> bool:
            return await asyncio.to_thread(lambda: d.container("app-dev").status == "exited")

        await until(stopped, 60, "the idle development container stopping")
        assert await body(preview) == "v3 with lib"  # a preview request starts it again
    assert any(e["kind"] == "stopped" for e in await d.events("app-dev"))
    # Its packages were installed at the first start and kept: not again at the second (nothing changed).
    logs = (await asyncio.to_thread(dev.logs)).decode()
    assert logs.count("added 1 package") == 1, logs
    cache = d.dir / "state" / "dev-cache" / "app"
    assert (cache / "lib" / "index.js").is_file(), sorted(p.name for p in cache.iterdir())

    async def build_failed() -> bool:  # the production recipe cannot install it (README, known limits)
        return any(e["kind"] == "build_failed" for e in await d.events("app"))

    await until(build_failed, 120, "the production build's failure")


async def _request(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    ident = id(message)
    await ws.send_json({**message, "id": ident})
    return await _answer(ws, ident)


async def _push(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=10)
        if message.get("op") == "changed":
            return dict(message)
