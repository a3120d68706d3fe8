"""History in SQLite (issue 16, groundwork): minute points as they end, rolled up to hours after a day (exactly:
core/history.py), hours dropped after 90 days, so a site's rows are bounded (at most a day of minutes and 90 days
of hours, whatever happens). One writer: the recorder's task, off the request path."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, fields

import aiosqlite

from activator.core.history import HOUR, MINUTE, Point, Retention, roll_up

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    site    TEXT    NOT NULL,
    start   INTEGER NOT NULL,               -- unix seconds, a multiple of `seconds`
    seconds INTEGER NOT NULL,               -- 60 or 3600
    figures TEXT    NOT NULL,               -- the Point's figures, JSON
    PRIMARY KEY (site, seconds, start)
) WITHOUT ROWID;
"""
_FIGURES = [f.name for f in fields(Point) if f.name not in ("site", "start", "seconds")]


def _row(p: Point) -> tuple[str, int, int, str]:
    figures = {k: v for k, v in asdict(p).items() if k in _FIGURES}
    return p.site, p.start, p.seconds, json.dumps(figures, separators=(",", ":"))


def _point(site: str, start: int, seconds: int, figures: str) -> Point:
    values = json.loads(figures)
    values["latency"] = tuple(values["latency"])
    return Point(site, start, seconds, **values)


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
        query = "SELECT site, start, seconds, figures FROM history WHERE start >= ? AND start <= ?"
        async with self._db.execute(query, (min(p.start for p in rows), max(p.start for p in rows))) as cur:
            there = {
                (site, start, seconds): _point(site, start, seconds, figures)
                for site, start, seconds, figures in await cur.fetchall()
            }
        merged = [
            roll_up([there[key], p], p.seconds)[0] if (key := (p.site, p.start, p.seconds)) in there else p
            for p in rows
        ]
        await self._db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)", [_row(p) for p in merged])
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
        query = "SELECT site, start, seconds, figures FROM history WHERE seconds = ? AND start >= ?"
        args: list[object] = [seconds, since]
        if before is not None:
            query, args = query + " AND start < ?", [*args, before]
        if site is not None:
            query, args = query + " AND site = ?", [*args, site]
        async with self._db.execute(query + " ORDER BY start, site", args) as cur:
            return [_point(*row) for row in await cur.fetchall()]

    async def rows(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM history") as cur:
            (n,) = await cur.fetchone() or (0,)
            return int(n)
