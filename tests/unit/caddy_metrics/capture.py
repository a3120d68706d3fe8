"""Captures the /metrics texts the unit tests read (test_caddy_metrics.py), from the Caddy installed with dialup.

    PYTHONPATH=. .venv/bin/python tests/unit/caddy_metrics/capture.py

Caddy serves dialup's rendered config (blog.test and www.blog.test; *.wild.test; the 404 for other hosts) in front
of a small upstream of its own, and the text of /metrics is saved after each step. The first file is kept whole;
the others keep only Caddy's own families (caddy_*), what the parser reads."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

from activator.config import load_config
from activator.proxy.process import bundled_binary
from activator.proxy.render import render
from tests.integration.harness import free_port

HERE = Path(__file__).resolve().parent


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cm-", dir="/tmp"))
    http, upstream = free_port(), free_port()
    config_path = tmp / "dialup.toml"
    config_path.write_text(
        f'[server]\nstate_dir = "{tmp}/state"\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[caddy]\nhttp_listen = "127.0.0.1:{http}"\nadmin = "unix/{tmp}/caddy.sock"\n'
        '[[sites]]\nname = "blog"\nhosts = ["blog.test", "www.blog.test"]\nimage = "x"\nport = 8080\n'
        '[[sites]]\nname = "wild"\nhosts = ["*.wild.test"]\nimage = "x"\nport = 8080\n'
    )
    config = load_config(config_path)
    app = web.Application()
    app.router.add_get("/", lambda r: web.Response(text="ok\n"))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", upstream).start()
    (tmp / "caddy.json").write_text(json.dumps(render(config, {"blog": upstream, "wild": upstream})))
    caddy = await asyncio.create_subprocess_exec(str(bundled_binary()), "run", "--config", str(tmp / "caddy.json"))
    admin = aiohttp.UnixConnector(path=f"{tmp}/caddy.sock")
    try:
        async with aiohttp.ClientSession() as s, aiohttp.ClientSession(connector=admin) as a:
            for _ in range(100):
                try:
                    async with a.get("http://localhost/config/"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)

            async def send(*hosts: str) -> None:
                for host in hosts:
                    async with s.get(f"http://127.0.0.1:{http}/", headers={"Host": host}) as r:
                        await r.read()

            async def save(name: str, whole: bool = False) -> None:
                async with a.get("http://localhost/metrics") as r:
                    text = await r.text()
                if not whole:
                    text = "".join(line for line in text.splitlines(True) if "caddy_" in line)
                (HERE / name).write_text(text)

            await send("blog.test", "blog.test", "blog.test", "www.blog.test", f"BLOG.test:{http}", f"blog.test:{http}")
            await send("a.wild.test", "b.wild.test", "nope.test")
            await save("1-first.txt", whole=True)
            await send("blog.test", "x.wild.test")
            await save("2-more.txt")
            # A route switch, as the activator makes one: Caddy reloads and its counters start from zero.
            async with a.patch(
                "http://localhost/id/dialup-proxy-blog/upstreams",
                json=[{"dial": f"127.0.0.1:{upstream}"}, {"dial": str(config.server.listen)}, {"dial": "127.0.0.1:1"}],
            ) as r:
                assert r.status == 200, await r.text()
            await save("3-reloaded.txt")
            await send("www.blog.test", "www.blog.test")
            await save("4-after.txt")
    finally:
        caddy.terminate()
        await caddy.wait()
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
