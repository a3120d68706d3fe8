"""Backups on their schedules, inside `dialup up`: each class when it is due (`every` after its last success; one
missed while dialup was down runs at once, once), the repository checked every `verify_every`, one at a time, in
the background (restic at the lowest priorities: never on the request path). A failure is tried again after
RETRY_AFTER and shows in `dialup status` until a backup of its class succeeds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from activator.backups.restic import ResticFailed
from activator.backups.service import BackupBusy, BackupFailed, Backups
from activator.config_backups import BackupClass
from activator.core.retention import next_run
from activator.periodic import Periodic

log = logging.getLogger("activator.backups")
RETRY_AFTER = 600.0  # seconds after a failed backup before its class is tried again
TICK = 30.0  # how often the schedule is looked at (less for schedules shorter than a minute)


@dataclass
class ClassState:
    last_success: float | None = None
    next_run: float = 0.0
    last_failure: str | None = None
    failed_at: float | None = None


class Scheduler:
    """Writer of: each class's state (last success, next run, last failure) and the verification's. The
    repository's snapshots are what the last successes are first read from."""

    def __init__(
        self, backups: Backups, wall: Callable[[], float] = time.time, ready: Callable[[], bool] = lambda: True
    ) -> None:
        # ready: False while the sites are not yet what a backup should hold (their first releases building).
        self.backups, self._wall, self._ready = backups, wall, ready
        cfg = backups.config.backups
        self.classes = {kind: ClassState() for kind in BackupClass}
        self.verification = ClassState()
        self._loaded = False
        shortest = min(cfg.schedule(k).every for k in BackupClass)
        self.loop = Periodic("backups", min(TICK, max(1.0, shortest / 4)), self.tick)
        self._ticking = asyncio.Lock()
        self._first: asyncio.Task[None] | None = None

    def start(self) -> None:
        """The first look at once (what was missed while dialup was down), then every tick."""
        self._first = asyncio.ensure_future(self.tick())
        self.loop.start()

    async def close(self) -> None:
        if self._first is not None:
            self._first.cancel()
            await asyncio.gather(self._first, return_exceptions=True)
        await self.loop.close()

    async def _load(self) -> None:
        await self.backups.open()
        for kind, state in self.classes.items():
            state.last_success = await self.backups.last_success(kind)
            state.next_run = next_run(
                state.last_success, self.backups.config.backups.schedule(kind).every, self._wall()
            )
        # A check at each start too, after the catch-up backups: a dialup restarted more often than verify_every
        # is still verified.
        self.verification.next_run = self._wall()
        self._loaded = True

    async def tick(self) -> None:
        if self._ticking.locked() or not self._ready():
            return  # a backup of the last tick still runs, or deploys are under way
        async with self._ticking:
            await self._tick()

    async def _tick(self) -> None:
        if not self._loaded:
            try:
                await self._load()
            except BackupBusy:
                return  # a command's backup runs (it may be making the repository): the next tick
            except Exception as exc:  # shown in status, tried again at the next tick
                reason = str(exc) if isinstance(exc, ResticFailed | OSError) else repr(exc)
                log.error("backups: cannot open the repository: %s", reason)
                for state in self.classes.values():
                    state.last_failure, state.failed_at = f"cannot open the repository: {reason}", self._wall()
                return
        for kind, state in self.classes.items():
            if self._wall() >= state.next_run:
                await self._run(kind, state)
        if self._wall() >= self.verification.next_run:
            await self._verify()

    async def _run(self, kind: BackupClass, state: ClassState) -> None:
        every = self.backups.config.backups.schedule(kind).every
        try:
            await self.backups.run(kind, "schedule")
        except BackupBusy:
            state.next_run = self._wall() + min(every, TICK)  # the one before still runs: soon again
            return
        except BackupFailed as exc:
            state.last_failure, state.failed_at = exc.reason, self._wall()
            state.next_run = self._wall() + min(every, RETRY_AFTER)
            return
        except asyncio.CancelledError:
            raise
        state.last_success, state.last_failure, state.failed_at = self._wall(), None, None
        state.next_run = state.last_success + every

    async def _verify(self) -> None:
        v, every = self.verification, self.backups.config.backups.verify_every
        try:
            await self.backups.verify("schedule")
        except BackupBusy:
            v.next_run = self._wall() + TICK
            return
        except BackupFailed as exc:
            v.last_failure, v.failed_at = exc.reason, self._wall()
            v.next_run = self._wall() + min(every, RETRY_AFTER)
            return
        v.last_success, v.last_failure, v.failed_at = self._wall(), None, None
        v.next_run = v.last_success + every

    def status(self) -> dict[str, Any]:
        def row(state: ClassState) -> dict[str, Any]:
            return {
                "last_success": state.last_success,
                "next_run": state.next_run if self._loaded else None,
                "failing": state.last_failure,
            }

        return {**{k.value: row(s) for k, s in self.classes.items()}, "verify": row(self.verification)}
