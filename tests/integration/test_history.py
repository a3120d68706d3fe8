"""The history with the real Docker, Caddy and SQLite: requests from Caddy's access log (their status and time),
memory from the monitor, starts from the event log, written by minute (the minute under way at shutdown)."""

from __future__ import annotations

import asyncio
import json
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
        rows = db.execute("SELECT site, seconds, figures FROM history WHERE site = 'blog'").fetchall()
    assert rows and {seconds for _, seconds, _ in rows} == {60}
    figures = [json.loads(f) for _, _, f in rows]
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
