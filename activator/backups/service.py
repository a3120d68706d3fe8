"""Backups of this deployment: one at a time per state directory (a file lock, which `dialup backup` shares), each
class staged (collect.py), stored by restic, its retention applied, and what happened written to the event log:
backup_started, backup_done (seconds, bytes added, snapshot), backup_failed (the reason), backup_skipped,
backup_verified. Writer of: the staging folders, the backup lock."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from activator.backups import collect
from activator.backups.restic import BackupSummary, Progress, Restic, ResticFailed
from activator.config import Config
from activator.config_backups import BackupClass
from activator.core.retention import Snapshot, to_forget
from activator.interfaces import EventLog
from activator.model import EventKind

log = logging.getLogger("activator.backups")
SITE = "(backups)"  # the `site` of backup events
TAG = "dialup"
LOCK_POLL = 0.5  # seconds between looks at the lock, for a command that waits for the backup under way


class BackupBusy(Exception):
    """Another backup of this state directory runs now."""


class BackupFailed(Exception):
    """A backup (or the verification) did not complete: which, and why (also in its backup_failed event)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind, self.reason = kind, reason
        super().__init__(f"{kind} backup failed: {reason}")


def class_tag(kind: BackupClass) -> str:
    return f"class:{kind.value}"


def restic_for(config: Config) -> Restic:
    b, system = config.backups, config.server.system_dir
    assert b.repository is not None, "no [backups] repository"
    return Restic(b.restic, b.repository, b.key_file(system), system / "restic-cache")


class Backups:
    def __init__(
        self,
        config: Callable[[], Config],
        restic: Restic,
        events: EventLog,
        live_images: Callable[[], Awaitable[list[str]]],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config, self.restic, self._events = config, restic, events
        self._live_images, self._wall = live_images, wall
        # A command waits for a backup under way (and is told each time it looks); the schedule skips instead.
        self.wait: Callable[[], None] | None = None

    @property
    def config(self) -> Config:
        """The config as it runs now (a reload adds and removes sites, and their sources)."""
        return self._config()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """The backup lock, or BackupBusy at once; with `wait` set (a command's), once the one under way ends."""
        path = self.config.server.system_dir / "backup.lock"
        fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self.wait is None:
                        raise BackupBusy("another backup of this deployment runs now") from None
                    self.wait()
                    await asyncio.sleep(LOCK_POLL)
            yield
        finally:
            os.close(fd)  # (the lock goes with it)

    async def run(self, kind: BackupClass, cause: str, progress: Progress | None = None) -> BackupSummary:
        """One backup of the class now, then its retention. Raises BackupBusy or BackupFailed (both recorded)."""
        try:
            async with self._locked():
                await self._events.record(SITE, EventKind.BACKUP_STARTED, cause, detail=kind.value)
                began = time.monotonic()
                try:
                    await self.restic.ensure_repository()
                    summary = await self._store(kind, progress)
                    await self._retention(kind)
                except Exception as exc:  # whatever it was (restic, the database copy, docker save): said, loudly
                    reason = str(exc) if isinstance(exc, ResticFailed | collect.CollectFailed) else repr(exc)
                    await self._events.record(SITE, EventKind.BACKUP_FAILED, cause, detail=f"{kind.value}: {reason}")
                    log.error("%s backup failed: %s", kind.value, reason)
                    raise BackupFailed(kind.value, reason) from None
                seconds = time.monotonic() - began
                detail = (
                    f"{kind.value}: snapshot {summary.snapshot[:8]}, {summary.files} files, "
                    f"{summary.bytes_processed} bytes read, {summary.bytes_added} bytes new (before compression)"
                )
                await self._events.record(SITE, EventKind.BACKUP_DONE, cause, seconds * 1000, detail)
                return summary
        except BackupBusy:
            await self._events.record(
                SITE, EventKind.BACKUP_SKIPPED, cause, detail=f"{kind.value}: the one before runs"
            )
            raise

    async def _store(self, kind: BackupClass, progress: Progress | None) -> BackupSummary:
        staging = await asyncio.to_thread(collect.fresh, collect.staging_dir(self.config, kind))
        images: dict[str, str] = {}
        if kind in (BackupClass.DB, BackupClass.SITES):
            # The sites class holds the database as it was then too: a restore's releases match its files.
            await asyncio.to_thread(collect.copy_database, self.config.server.db_path, staging / "dialup.db")
        if kind is BackupClass.SITES:
            images = await collect.stage_images(
                self.config.builds.docker, await self._live_images(), staging / "images"
            )
        manifest = collect.manifest_of(self.config, kind, staging, images)
        await asyncio.to_thread(manifest.write, staging)
        paths = await asyncio.to_thread(collect.paths_of, self.config, kind, staging)
        try:
            tags = [TAG, class_tag(kind), collect.manifest_tag(staging)]  # where its manifest is, exactly
            return await self.restic.backup(
                collect.relative(paths), tags, self.config.server.name, collect.ROOT, progress
            )
        finally:
            await asyncio.to_thread(collect.fresh, staging)  # the staged copies are in the repository now

    async def _retention(self, kind: BackupClass, prune: bool = True) -> None:
        stored = await self.restic.snapshots(class_tag(kind))
        mine = [Snapshot(s.id, s.time) for s in stored if s.host == self.config.server.name]
        await self.restic.forget(to_forget(mine, self.config.backups.schedule(kind).keep, self._wall()), prune)

    async def verify(self, cause: str) -> None:
        """`restic check`, reading back [backups] verify_data of the stored data. Raises BackupFailed."""
        began = time.monotonic()
        try:
            async with self._locked():
                await self.restic.check(self.config.backups.verify_data)
        except BackupBusy:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, ResticFailed) else repr(exc)
            await self._events.record(SITE, EventKind.BACKUP_FAILED, cause, detail=f"verify: {reason}")
            raise BackupFailed("verify", reason) from None
        detail = f"read back {self.config.backups.verify_data} of the data"
        await self._events.record(SITE, EventKind.BACKUP_VERIFIED, cause, (time.monotonic() - began) * 1000, detail)

    async def open(self) -> None:
        """The repository found, or made (under the backup lock: another process may be making it now)."""
        async with self._locked():
            await self.restic.ensure_repository()

    async def last_success(self, kind: BackupClass) -> float | None:
        stored = [s.time for s in await self.restic.snapshots(class_tag(kind)) if s.host == self.config.server.name]
        return max(stored, default=None)

    async def trim(self) -> str:
        """The storage response: each class's retention applied now and the space it frees given back (prune),
        before the disk fills. Returns what was done, for the event that says so."""
        try:
            async with self._locked():
                await self.restic.ensure_repository()
                for kind in BackupClass:
                    await self._retention(kind, prune=False)
                await self.restic.run(["prune"])  # once, for all of them
        except BackupBusy:
            return "backups: a backup runs, retention is applied after it"
        except Exception as exc:
            return f"backups: retention failed: {exc}"
        return "backups: retention applied, space pruned"
