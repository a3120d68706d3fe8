"""Releases in SQLite: what each build made (a folder of files or an image), from which source, and which one
is live. Writer: the Deployer (activator/builds/deployer.py); `dialup releases` reads them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import aiosqlite

from activator.config import Config

SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    site          TEXT    NOT NULL,
    n             INTEGER NOT NULL,           -- r1, r2, ... per site
    source_hash   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,           -- files | image
    artifact      TEXT    NOT NULL,           -- the release folder, or the image tag
    build_seconds REAL    NOT NULL,
    created       REAL    NOT NULL,           -- unix seconds
    live_at       REAL,                       -- when it last went live
    live          INTEGER NOT NULL DEFAULT 0, -- one per site
    removed       INTEGER NOT NULL DEFAULT 0, -- its folder or image was deleted (keep_releases)
    PRIMARY KEY (site, n)
);
"""


@dataclass(frozen=True)
class Release:
    site: str
    n: int
    source_hash: str
    kind: str
    artifact: str
    build_seconds: float
    created: float
    live_at: float | None
    live: bool
    removed: bool

    @property
    def id(self) -> str:
        return f"r{self.n}"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


_COLUMNS = "site, n, source_hash, kind, artifact, build_seconds, created, live_at, live, removed"


def _release(row: Any) -> Release:
    site, n, source_hash, kind, artifact, seconds, created, live_at, live, removed = row
    return Release(site, n, source_hash, kind, artifact, seconds, created, live_at, bool(live), bool(removed))


class Releases:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def open(self) -> None:
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def of(self, site: str) -> list[Release]:
        """Newest first."""
        query = f"SELECT {_COLUMNS} FROM releases WHERE site = ? ORDER BY n DESC"
        async with self._db.execute(query, (site,)) as cur:
            return [_release(row) for row in await cur.fetchall()]

    async def live(self) -> dict[str, Release]:
        """Each site's live release (of whichever kind: a caller that cares checks it)."""
        async with self._db.execute(f"SELECT {_COLUMNS} FROM releases WHERE live = 1") as cur:
            return {r.site: r for r in map(_release, await cur.fetchall())}

    async def live_ids(self) -> dict[str, str]:
        """Each site's live release id (r1, r2, ...), for status."""
        return {site: release.id for site, release in (await self.live()).items()}

    async def next_number(self, site: str) -> int:
        async with self._db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM releases WHERE site = ?", (site,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 1

    async def add(self, site: str, n: int, source_hash: str, kind: str, artifact: str, seconds: float) -> Release:
        await self._db.execute(
            "INSERT INTO releases (site, n, source_hash, kind, artifact, build_seconds, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (site, n, source_hash, kind, artifact, seconds, time.time()),
        )
        await self._db.commit()
        return next(r for r in await self.of(site) if r.n == n)

    async def made_live(self, site: str, n: int) -> None:
        await self._db.execute("UPDATE releases SET live = (n = ?) WHERE site = ?", (n, site))
        await self._db.execute("UPDATE releases SET live_at = ? WHERE site = ? AND n = ?", (time.time(), site, n))
        await self._db.commit()

    async def mark_removed(self, site: str, n: int) -> None:
        await self._db.execute("UPDATE releases SET removed = 1 WHERE site = ? AND n = ?", (site, n))
        await self._db.commit()


def with_releases(config: Config, live: dict[str, Release]) -> Config:
    """The config as it runs: each site built from source with its live release's image."""

    def release(name: str) -> Release | None:  # a replica runs its site's
        found = live.get(name)
        return found if found is not None and found.kind == "image" else None

    sites = tuple(
        replace(s, release=found.artifact) if (found := release(s.replica_of or s.name)) is not None else s
        for s in config.sites
    )
    return replace(config, sites=sites)
