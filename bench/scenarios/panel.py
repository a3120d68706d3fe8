"""panel: what the history and the panel cost (issue 16), each against the same deployment with no history.

One deployment of N sites (60; 20 with --quick), static, lazy, on their own networks (no holders: the figures are
the activator's, not 60 holders'). First with an empty history: the activator's memory (RSS) and CPU over an idle
window, and the time to answer /panel and /status (the admin socket, 10 loads each). Then dialup is stopped, the
database is given 7 days of history for every site (a day of minutes, 6 days of hours: what the retention keeps
of a week), dialup started again (adopting everything), and the same measured, plus a site's charts page. The
history's disk use per site per month is the table's growth for 30 days (a day of minutes, 29 days of hours) of
N sites, divided by N.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

import aiohttp
import aiosqlite
import docker
import psutil

from activator.admin.history import History
from activator.core.history import HOUR, LATENCY_BOUNDS_MS, MINUTE, Point
from bench.report import Figure, Result
from tests.integration.harness import Deployment, site

IMAGE = "dialup-test-static:latest"
DAY = 24 * HOUR
MiB = 1 << 20


def _point(name: str, start: int, seconds: int, rng: random.Random) -> Point:
    n = rng.randint(0, 40) * seconds // MINUTE
    latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for _ in range(min(n, 50)):
        latency[rng.randint(0, 6)] += max(1, n // 50)
    used = rng.randint(8, 40) * MiB
    return Point(name, start, seconds, requests=n, errors=n // 50, latency=tuple(latency), memory_peak=used,
                 memory_sum=used * 4, readings=4, memory_limit=64 * MiB, held_seconds=seconds,
                 reserved_byte_seconds=64 * MiB * seconds, used_byte_seconds=used * seconds, up_seconds=seconds,
                 cold_starts=rng.randint(0, 1))  # fmt: skip


def history_points(names: list[str], now: int, minute_days: int, hour_days: int) -> list[Point]:
    rng = random.Random(11)
    start = now - now % HOUR
    points = []
    for name in names:
        points += [_point(name, start - (m + 1) * MINUTE, MINUTE, rng) for m in range(minute_days * 1440)]
        first_hour = start - minute_days * DAY
        points += [_point(name, first_hour - (h + 1) * HOUR, HOUR, rng) for h in range(hour_days * 24)]
    return points


async def _fill(db_path: Path, points: list[Point]) -> None:
    async with aiosqlite.connect(db_path) as db:
        history = History(db)
        await history.open()
        for i in range(0, len(points), 5000):
            await history.write(points[i : i + 5000])
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


async def _table_bytes(db_path: Path) -> int:
    async with aiosqlite.connect(db_path) as db:
        try:
            async with db.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = 'history'") as cur:
                row = await cur.fetchone()
                return int(row[0] or 0) if row else 0
        except aiosqlite.OperationalError:  # no dbstat: the file's size
            return (await asyncio.to_thread(db_path.stat)).st_size


async def _timed_get(socket: Path, path: str, runs: int) -> float:
    times = []
    connector = aiohttp.UnixConnector(path=str(socket))
    async with aiohttp.ClientSession(connector=connector) as s:
        for _ in range(runs):
            began = time.perf_counter()
            async with s.get(f"http://localhost{path}") as r:
                await r.read()
                assert r.status == 200, (path, r.status)
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def _measure(d: Deployment, window: float, site_name: str) -> dict[str, float]:
    assert d.proc is not None
    proc = psutil.Process(d.proc.pid)
    await asyncio.sleep(2.0)  # settled after startup
    before = proc.cpu_times()
    await asyncio.sleep(window)
    after = proc.cpu_times()
    cpu = (after.user + after.system - before.user - before.system) / window * 100
    return {
        "rss": proc.memory_info().rss / MiB,
        "cpu": cpu,
        "panel": await _timed_get(d.admin_socket, "/panel", 10),
        "status": await _timed_get(d.admin_socket, "/status", 10),
        "site": await _timed_get(d.admin_socket, f"/panel/sites/{site_name}", 10),
    }


async def panel(quick: bool) -> Result:
    n = 20 if quick else 60
    window = 10.0 if quick else 30.0
    names = [f"s{i:02d}" for i in range(n)]
    sites = [site(name, IMAGE, network="plain", idle_timeout="off") for name in names]
    d = Deployment(docker.from_env(), sites, cost={"monthly": 25})
    figures: list[Figure] = []
    try:
        await d.start()
        empty = await _measure(d, window, names[0])
        db_path = d.dir / "state" / "system" / "dialup.db"
        d.kill()
        now = int(time.time())
        before = await _table_bytes(db_path)
        await _fill(db_path, history_points(names, now, 1, 6))
        week = await _table_bytes(db_path)
        await d.start()
        full = await _measure(d, window, names[0])
        d.kill()
        # A month of it: 29 more days of hours (the retention keeps 90).
        await _fill(db_path, history_points(names, now - 7 * DAY, 0, 23))
        month = await _table_bytes(db_path)
    finally:
        d.close()
    base = "no history (same deployment)"
    figures += [
        Figure(f"activator RSS, {n} sites, 7 days of history", full["rss"], "MiB", empty["rss"], base),
        Figure("activator CPU, idle window", full["cpu"], "% of a core", empty["cpu"], base),
        Figure("/panel: time to answer, median of 10", full["panel"], "ms", empty["panel"], base),
        Figure("/panel/sites/SITE: time to answer", full["site"], "ms", empty["site"], base),
        Figure("/status (the JSON the panel adds to)", full["status"], "ms", empty["status"], base),
        Figure("history on disk per site, 7 days", (week - before) / n / 1024, "KiB"),
        Figure("history on disk per site per month", (month - before) / n / 1024, "KiB"),
    ]
    description = f"{n} sites; 7 days of history per site (1 day of minutes, 6 of hours); idle window {window:g} s"
    return Result("panel", description, figures, unit="ms")
