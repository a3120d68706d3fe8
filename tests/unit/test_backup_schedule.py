"""The backup scheduler on a fake clock and a fake of the Backups it drives: each class when due, one missed
while dialup was down caught up at once and once, a busy one tried again soon, a failure tried again later and
shown until a backup of its class succeeds; the verification on its own schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activator.backups.scheduler import RETRY_AFTER, Scheduler
from activator.backups.service import BackupBusy, BackupFailed
from activator.config import Config
from activator.config_backups import BackupClass, BackupsConfig, Schedule

HOUR = 3600.0
NOW = 1_800_000_000.0


class FakeRestic:
    async def ensure_repository(self) -> None:
        pass


@dataclass
class FakeBackups:
    """Backups as the scheduler sees it: runs recorded, and what the next ones do."""

    last: dict[BackupClass, float | None]
    config: Config = field(
        default_factory=lambda: Config(
            path=Path("/x/dialup.toml"),
            backups=BackupsConfig(
                repository=Path("/r"),
                database=Schedule(6 * HOUR, 7 * 24 * HOUR),
                sites=Schedule(24 * HOUR, 30 * 24 * HOUR),
                config=Schedule(7 * 24 * HOUR, 28 * 24 * HOUR),
                verify_every=24 * HOUR,
            ),
        )
    )
    restic: Any = field(default_factory=FakeRestic)
    runs: list[str] = field(default_factory=list)
    outcome: dict[str, Exception] = field(default_factory=dict)

    async def open(self) -> None:
        await self.restic.ensure_repository()

    async def last_success(self, kind: BackupClass) -> float | None:
        return self.last[kind]

    async def run(self, kind: BackupClass, cause: str) -> None:
        self.runs.append(kind.value)
        if (error := self.outcome.pop(kind.value, None)) is not None:
            raise error

    async def verify(self, cause: str) -> None:
        self.runs.append("verify")
        if (error := self.outcome.pop("verify", None)) is not None:
            raise error


class Wall:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def scheduler(last: dict[BackupClass, float | None]) -> tuple[Scheduler, FakeBackups, Wall]:
    backups, wall = FakeBackups(last), Wall()
    return Scheduler(backups, wall), backups, wall  # type: ignore[arg-type]


async def test_what_was_missed_while_down_runs_at_once_and_once_then_on_schedule() -> None:
    s, b, wall = scheduler(
        {BackupClass.DB: NOW - 30 * 24 * HOUR, BackupClass.SITES: NOW - HOUR, BackupClass.CONFIG: None}
    )
    await s.tick()
    # A month missed: one db backup; sites not yet due; config never made; and a check at each start.
    assert b.runs == ["db", "config", "verify"]
    await s.tick()
    assert b.runs == ["db", "config", "verify"]  # nothing due
    wall.now += 6 * HOUR
    await s.tick()
    assert b.runs == ["db", "config", "verify", "db"]
    wall.now += 17 * HOUR  # 23 h in: db due again (6 h after the last), sites 24 h after its last
    await s.tick()
    assert b.runs[-2:] == ["db", "sites"]
    wall.now += HOUR
    await s.tick()
    assert b.runs[-1] == "verify"  # a day after the last check
    status = s.status()
    assert (status["sites"]["last_success"], status["sites"]["next_run"]) == (NOW + 23 * HOUR, NOW + 47 * HOUR)


async def test_a_failure_is_tried_again_later_and_shown_until_a_backup_succeeds() -> None:
    s, b, wall = scheduler({BackupClass.DB: None, BackupClass.SITES: NOW, BackupClass.CONFIG: NOW})
    b.outcome["db"] = BackupFailed("db", "restic backup exited 1: disk full")
    await s.tick()
    assert s.status()["db"]["failing"] == "restic backup exited 1: disk full"
    wall.now += RETRY_AFTER - 1
    await s.tick()
    assert b.runs == ["db", "verify"]  # not before RETRY_AFTER
    wall.now += 1
    await s.tick()
    assert b.runs == ["db", "verify", "db"] and s.status()["db"]["failing"] is None


async def test_a_class_whose_backup_is_still_running_elsewhere_is_tried_again_soon() -> None:
    s, b, wall = scheduler({BackupClass.DB: None, BackupClass.SITES: NOW, BackupClass.CONFIG: NOW})
    b.outcome["db"] = BackupBusy("`dialup backup` runs")
    await s.tick()
    wall.now += 30
    await s.tick()
    assert b.runs == ["db", "verify", "db"] and s.status()["db"]["last_success"] == wall.now


async def test_a_repository_that_cannot_be_opened_shows_as_failing_and_is_tried_again() -> None:
    s, b, wall = scheduler({BackupClass.DB: None, BackupClass.SITES: None, BackupClass.CONFIG: None})

    async def unreadable() -> None:
        raise ValueError("Separator is found, but chunk is longer than limit")

    b.restic.ensure_repository = unreadable
    await s.tick()
    assert b.runs == [] and "cannot open the repository" in s.status()["db"]["failing"]
    b.restic = FakeRestic()
    wall.now += 30
    await s.tick()
    assert b.runs == ["db", "sites", "config", "verify"] and s.status()["db"]["failing"] is None
