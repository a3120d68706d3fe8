"""State in SQLite (WAL): one event row per change of a site's state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,           -- unix seconds
    site        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,           -- start, start_failed, exited, created, ...
    cause       TEXT    NOT NULL,           -- request, persistent, ...
    duration_ms REAL,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_site_kind ON events (site, kind, id);
"""


@dataclass(frozen=True)
class SiteCounts:
    starts: int = 0
    wakes: int = 0
    crashes: int = 0  # crashes and OOM kills
    last_start_ms: float | None = None


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "Store.open() first"
        return self._db

    async def record(
        self, site: str, kind: str, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None:
        await self.db.execute(
            "INSERT INTO events (ts, site, kind, cause, duration_ms, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), site, kind, cause, duration_ms, detail),
        )
        await self.db.commit()

    async def site_counts(self) -> dict[str, SiteCounts]:
        """Starts, wakes and crashes per site over the whole event log, and the last start's duration."""
        query = """
            SELECT site,
                   SUM(kind = 'start'), SUM(kind = 'wake'), SUM(kind IN ('crash', 'oom')),
                   (SELECT duration_ms FROM events e2 WHERE e2.site = e.site AND e2.kind = 'start'
                    ORDER BY id DESC LIMIT 1)
            FROM events e GROUP BY site
        """
        async with self.db.execute(query) as cur:
            return {
                site: SiteCounts(starts, wakes, crashes, last)
                for site, starts, wakes, crashes, last in await cur.fetchall()
            }

    async def events_of(self, site: str) -> list[dict[str, Any]]:
        """The site's event rows, oldest first."""
        query = "SELECT ts, kind, cause, duration_ms, detail FROM events WHERE site = ? ORDER BY id"
        async with self.db.execute(query, (site,)) as cur:
            return [
                {"ts": ts, "kind": kind, "cause": cause, "duration_ms": ms, "detail": detail}
                for ts, kind, cause, ms, detail in await cur.fetchall()
            ]
