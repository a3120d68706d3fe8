"""The history in real SQLite on a fake clock: rolled up exactly, and bounded in size whatever the time."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from activator.admin.history import History
from activator.core.history import HOUR, MINUTE, Point, Retention, roll_up

T0 = 1_800_000_000 - 1_800_000_000 % HOUR


def minute(site: str, start: int, n: int) -> Point:
    latency = tuple(n if i == 2 else 0 for i in range(12))
    return Point(
        site,
        start,
        MINUTE,
        requests=n,
        errors=n // 10,
        latency=latency,
        memory_peak=n << 20,
        memory_sum=n << 20,
        readings=1,
        memory_limit=64 << 20,
        up_seconds=60.0,
    )


async def test_minutes_rolled_up_are_the_same_hours_and_the_rows_stay_bounded(tmp_path: Path) -> None:
    # The default keeps a day of minutes and 90 days of hours; the same code, with 2 hours and a day, over 3 days.
    keep = Retention(minutes=2 * HOUR, hours=24 * HOUR)
    async with aiosqlite.connect(tmp_path / "h.db") as db:
        history = History(db, keep)
        await history.open()
        written: list[Point] = []
        for hour in range(72):
            batch = [
                minute(site, T0 + hour * HOUR + m * MINUTE, (hour + m) % 50)
                for m in range(60)
                for site in ("blog", "api")
            ]
            written += batch
            await history.write(batch)
            await history.compact(T0 + (hour + 1) * HOUR)
            assert await history.rows() <= 2 * (120 + 24 + 2)  # 2 hours of minutes, a day of hours (and the edges)
        now = T0 + 72 * HOUR
        hours = await history.points(seconds=HOUR)
        expected = [h for h in roll_up(written, HOUR) if now - 24 * HOUR <= h.start < now - 2 * HOUR]
        assert [h for h in hours if h.start >= now - 24 * HOUR] == expected
        assert min(h.start for h in hours) >= now - 25 * HOUR
        minutes = await history.points(seconds=MINUTE)
        assert minutes == sorted((p for p in written if p.start >= now - 2 * HOUR), key=lambda p: (p.start, p.site))


async def test_a_minute_written_twice_adds_up(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "h.db") as db:
        history = History(db)
        await history.open()
        await history.write([minute("blog", T0, 3)])
        await history.write([minute("blog", T0, 4)])
        (point,) = await history.points(seconds=MINUTE)
        assert point.requests == 7 and point.memory_peak == 4 << 20 and point.readings == 2


async def test_totals_are_summed_by_sqlite_as_rolling_up_would(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "h.db") as db:
        history = History(db)
        await history.open()
        points = [minute(site, T0 + m * MINUTE, (m * 7) % 50) for m in range(180) for site in ("blog", "api")]
        await history.write(points)
        totals = await history.totals(T0 + 60 * MINUTE)
        for site in ("blog", "api"):
            (rolled,) = roll_up([p for p in points if p.site == site and p.start >= T0 + 3600], 3 * HOUR)
            got = totals[site]
            assert (got.requests, got.errors, got.memory_peak, got.readings, got.up_seconds) == (
                rolled.requests, rolled.errors, rolled.memory_peak, rolled.readings, rolled.up_seconds,
            )  # fmt: skip
            assert got.start == T0 + 3600
