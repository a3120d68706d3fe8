"""Retention and schedules with a fake clock: exactly the snapshots older than the class keeps go, never the newest;
a class is due `every` after its last success, and one missed while dialup was down runs at once, once."""

from __future__ import annotations

import pytest

from activator.core.retention import Snapshot, next_run, to_forget

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("ages_in_days", "keep_days", "forgotten"),
    [
        ([], 7, []),
        ([0.5, 1, 6.9], 7, []),  # all within
        ([0.5, 7.1, 8, 30], 7, ["d30", "d8", "d7.1"]),  # oldest first
        ([10, 20], 7, ["d20"]),  # the newest stays however old: backups stopped, the last good one is kept
        ([7], 7, []),  # exactly `keep` old: kept (older than, not as old as)
        ([40], 30, []),  # a single snapshot: never forgotten
    ],
)
def test_to_forget(ages_in_days: list[float], keep_days: float, forgotten: list[str]) -> None:
    snapshots = [Snapshot(f"d{age:g}", NOW - age * DAY) for age in ages_in_days]
    assert to_forget(snapshots, keep_days * DAY, NOW) == forgotten


def test_retention_over_a_month_of_six_hourly_backups_keeps_seven_days() -> None:
    snapshots: list[Snapshot] = []
    now = NOW
    for i in range(4 * 30):  # every 6 h for 30 days, retention applied after each
        snapshots.append(Snapshot(f"s{i}", now))
        gone = set(to_forget(snapshots, 7 * DAY, now))
        snapshots = [s for s in snapshots if s.id not in gone]
        now += 6 * 3600
    kept = sorted(s.time for s in snapshots)
    assert len(kept) == 29  # 7 days of 4 a day, and the one exactly 7 days old
    assert now - 6 * 3600 - kept[0] == 7 * DAY


@pytest.mark.parametrize(
    ("last", "every", "now", "due"),
    [
        (None, 3600, NOW, NOW),  # never backed up: now
        (NOW - 100, 3600, NOW, NOW - 100 + 3600),  # within its period: at its end
        (NOW - 3600, 3600, NOW, NOW),  # exactly due
        (NOW - 30 * DAY, 3600, NOW, NOW),  # down for a month: once, now
    ],
)
def test_next_run(last: float | None, every: float, now: float, due: float) -> None:
    assert next_run(last, every, now) == due
