"""Threshold crossings from readings, pure: one crossing per change of level, and how long a level held."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Level(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Limit:
    warning: float
    critical: float | None = None

    def level(self, value: float) -> Level:
        if self.critical is not None and value >= self.critical:
            return Level.CRITICAL
        return Level.WARNING if value >= self.warning else Level.OK


@dataclass(frozen=True)
class Crossing:
    metric: str
    before: Level
    after: Level
    value: float
    limit: Limit

    def describe(self) -> str:
        bound = self.limit.critical if self.after is Level.CRITICAL else self.limit.warning
        direction = "above" if self.after > self.before else "back below"
        if self.after < self.before:
            bound = self.limit.critical if self.before is Level.CRITICAL else self.limit.warning
        return f"{self.metric} {self.value:.1f} {direction} {bound:g} ({self.after.name.lower()})"


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
            after = limit.level(value)
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
