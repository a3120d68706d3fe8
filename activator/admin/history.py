"""History in SQLite (issue 16, groundwork): minute points as they end, rolled up to hours after a day (exactly:
core/history.py), hours dropped after 90 days, so a site's rows are bounded (at most a day of minutes and 90 days
of hours, whatever happens). One writer: the recorder's task, off the request path."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import aiosqlite

from activator.core.history import HOUR, MINUTE, Point, Retention, roll_up

# Every figure a column of its own (SQLite sums them itself: the panel's totals parse no row), but the histogram.
_FIGURES = [f.name for f in fields(Point) if f.name not in ("site", "start", "seconds")]
_NUMBERS = [f for f in _FIGURES if f != "latency"]
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS history (
    site    TEXT    NOT NULL,
    start   INTEGER NOT NULL,               -- unix seconds, a multiple of `seconds`
    seconds INTEGER NOT NULL,               -- 60 or 3600
    latency TEXT    NOT NULL,               -- requests per response-time bucket, comma-separated
    {", ".join(f"{name} REAL NOT NULL" for name in _NUMBERS)},
    PRIMARY KEY (site, seconds, start)
) WITHOUT ROWID;
"""
_COLUMNS = ", ".join(["site", "start", "seconds", "latency", *_NUMBERS])
_INTS = {f.name for f in fields(Point) if f.type in ("int", int)}


def _row(p: Point) -> tuple[object, ...]:
    return (p.site, p.start, p.seconds, ",".join(map(str, p.latency)), *(getattr(p, n) for n in _NUMBERS))


def _point(site: str, start: int, seconds: int, latency: str, *numbers: float) -> Point:
    values: dict[str, Any] = dict(zip(_NUMBERS, numbers, strict=True))
    values["latency"] = tuple(int(x) for x in latency.split(","))
    return _typed(site, start, seconds, values)


def _typed(site: str, start: int, seconds: int, values: dict[str, Any]) -> Point:
    """A Point from column values (SQLite's REAL for every number): the whole ones made whole again."""
    typed: dict[str, Any] = {n: int(v) if n in _INTS else v for n, v in values.items()}
    return Point(site, start, seconds, **typed)


class History:
    def __init__(self, db: aiosqlite.Connection, retention: Retention | None = None) -> None:
        self._db, self._retention = db, retention or Retention()

    async def open(self) -> None:
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def write(self, points: Iterable[Point]) -> None:
        """Points that ended (one written again for the same period adds to it: a restart's minute, an hour rolled
        up onto one there already): one read of what is there, one batch of writes."""
        rows = list(points)
        if not rows:
            return
        query = f"SELECT {_COLUMNS} FROM history WHERE start >= ? AND start <= ?"
        async with self._db.execute(query, (min(p.start for p in rows), max(p.start for p in rows))) as cur:
            found = [_point(*row) for row in await cur.fetchall()]
        there = {(p.site, p.start, p.seconds): p for p in found}
        merged = [
            roll_up([there[key], p], p.seconds)[0] if (key := (p.site, p.start, p.seconds)) in there else p
            for p in rows
        ]
        marks = ", ".join("?" * (4 + len(_NUMBERS)))
        await self._db.executemany(
            f"INSERT OR REPLACE INTO history ({_COLUMNS}) VALUES ({marks})", [_row(p) for p in merged]
        )
        await self._db.commit()

    async def compact(self, now: float) -> None:
        """Minutes before the retention's cut rolled up into hours (added to an hour already there), then dropped;
        hours past the retention dropped."""
        minute_cut, hour_cut = self._retention.cutoffs(now)
        old = await self.points(seconds=MINUTE, before=minute_cut)
        hours = roll_up(old, HOUR)
        await self._db.execute("DELETE FROM history WHERE seconds = ? AND start < ?", (MINUTE, minute_cut))
        await self.write(hours)
        await self._db.execute("DELETE FROM history WHERE seconds = ? AND start < ?", (HOUR, hour_cut))
        await self._db.commit()

    async def points(
        self, *, seconds: int, site: str | None = None, since: int = 0, before: int | None = None
    ) -> list[Point]:
        query = f"SELECT {_COLUMNS} FROM history WHERE seconds = ? AND start >= ?"
        args: list[object] = [seconds, since]
        if before is not None:
            query, args = query + " AND start < ?", [*args, before]
        if site is not None:
            query, args = query + " AND site = ?", [*args, site]
        async with self._db.execute(query + " ORDER BY start, site", args) as cur:
            return [_point(*row) for row in await cur.fetchall()]

    async def totals(self, since: int) -> dict[str, Point]:
        """Each site's figures from `since` on, summed (maxima for peak and limit) by SQLite itself: no row is
        parsed here (a week of 60 sites is 100,000 rows). The response-time histogram is not summed (zeros); the
        point's `start` is the site's oldest one, its `seconds` 0."""
        summed = [n for n in _NUMBERS if n not in ("memory_peak", "memory_limit")]
        columns = ", ".join(f"SUM({n})" for n in summed)
        query = (
            f"SELECT site, MIN(start), MAX(memory_peak), MAX(memory_limit), {columns} FROM history"
            " WHERE start >= ? GROUP BY site"
        )
        found = {}
        async with self._db.execute(query, (since,)) as cur:
            for site, start, peak, limit, *sums in await cur.fetchall():
                values: dict[str, Any] = {n: v or 0 for n, v in zip(summed, sums, strict=True)}
                values |= {"memory_peak": peak or 0, "memory_limit": limit or 0}
                found[site] = _typed(site, int(start), 0, values)
        return found

    async def rows(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM history") as cur:
            (n,) = await cur.fetchone() or (0,)
            return int(n)
