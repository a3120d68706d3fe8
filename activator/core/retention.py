"""Which backups a class's retention removes, and when a class is due: pure, time an argument (unix seconds)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: float  # unix seconds, when it was taken


def to_forget(snapshots: Iterable[Snapshot], keep: float, now: float) -> list[str]:
    """The snapshots older than `keep`, oldest first, but never the newest: a class whose backups have stopped
    (a disk that fills, a server that was off) keeps its last good one rather than none."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id))
    return [s.id for s in ordered[:-1] if now - s.time > keep]


def next_run(last_success: float | None, every: float, now: float) -> float:
    """When the class is next due: `every` after its last success, or now if it has none or is overdue (a
    backup missed while dialup was down is caught up at once, one run, not one per missed period)."""
    return now if last_success is None else max(now, last_success + every)
