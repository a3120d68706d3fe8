"""The history with the real Docker, Caddy and SQLite: requests from Caddy's access log (their status and time),
memory from the monitor, starts from the event log, written by minute (the minute under way at shutdown)."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp

from tests.integration.harness import site


async def test_requests_memory_and_starts_land_in_the_history(deploy, images):
    d = await deploy(
        [site("blog", images["pyapp"], kind="static")], activity="log", monitor_interval="200ms", cost={"monthly": 25}
    )
    async with aiohttp.ClientSession() as s:
        for path in ["/"] * 9 + ["/slow?s=0.3"]:
            async with s.get(d.url + path, headers={"Host": "blog.test"}) as r:
                assert r.status == 200
    await d.wait_routed("blog")
    assert d.proc is not None
    await asyncio.to_thread(lambda: (d.proc.terminate(), d.proc.wait(20)))  # type: ignore[union-attr]
    with sqlite3.connect(d.dir / "state" / "system" / "dialup.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM history WHERE site = 'blog'").fetchall()
    assert rows and {row["seconds"] for row in rows} == {60}
    figures = [{**dict(row), "latency": [int(n) for n in row["latency"].split(",")]} for row in rows]
    assert sum(f["requests"] for f in figures) == 10
    assert sum(f["errors"] for f in figures) == 0
    latency = [sum(column) for column in zip(*(f["latency"] for f in figures), strict=True)]
    assert sum(latency[5:]) >= 1  # the slow one: 250 ms or more
    assert sum(f["cold_starts"] for f in figures) == 1
    assert max(f["memory_peak"] for f in figures) > 0 and max(f["memory_limit"] for f in figures) == 64 << 20
    # What `dialup recommend` makes of it: blog's 64 MiB limit against its peak, and its share of $25.
    done = await asyncio.to_thread(d.command, "recommend")
    assert done.returncode == 0, done.stderr
    assert "cost over the last" in done.stdout and "  blog: $" in done.stdout, done.stdout
    assert "blog's peak in 7 days was" in done.stdout, done.stdout


async def test_the_panel_on_the_admin_socket_shows_the_sites_their_charts_and_alerts(deploy, images):
    d = await deploy(
        [site("blog", images["pyapp"], kind="static"), site("broken", images["broken"], kind="static")],
        activity="log", monitor_interval="200ms", cost={"monthly": 25},
    )  # fmt: skip
    async with aiohttp.ClientSession() as s:
        for host in ("blog.test", "broken.test"):
            async with s.get(d.url, headers={"Host": host}) as r:
                assert r.status == (200 if host == "blog.test" else 503)
    connector = aiohttp.UnixConnector(path=str(d.admin_socket))
    async with aiohttp.ClientSession(connector=connector) as admin:
        async with admin.get("http://localhost/panel") as r:
            page = await r.text()
            assert r.status == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert 'href="/panel/sites/blog"' in page and 'href="/panel/sites/broken"' in page
        assert "budget: " in page and "start_failed" in page  # the broken site's failure, an alert
        alert = int(page.split('action="/panel/alerts/')[1].split("/")[0])
        async with admin.post(f"http://localhost/panel/alerts/{alert}/ack", allow_redirects=False) as r:
            assert r.status == 303
        async with admin.get("http://localhost/panel") as r:
            assert f'action="/panel/alerts/{alert}/ack"' not in await r.text()
        async with admin.get("http://localhost/panel/sites/blog") as r:
            assert r.status == 200 and (await r.text()).count('<svg class="chart"') == 12
        async with admin.get("http://localhost/panel/panel.js") as r:
            assert r.status == 200 and "sortedBy" in await r.text()
        async with admin.get("http://localhost/panel/sites/nosuch") as r:
            assert r.status == 404
