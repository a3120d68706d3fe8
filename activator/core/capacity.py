"""Capacity planning, pure (issue 16, groundwork): the trend of a daily peak (memory, CPU), by least squares,
and the day it would cross a bound at that rate, with the server size to move to when it comes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from activator.core.sizes import SIZES, Size, shares

DAY = 86400
MIN_DAYS = 7  # fewer days of peaks tell no trend
HORIZON_DAYS = 365  # a crossing further away than this is not told


@dataclass(frozen=True)
class Trend:
    per_day: float  # the peak's growth per day (its unit per day)
    last: float  # the fitted value at the last day


@dataclass(frozen=True)
class Forecast:
    bound: float
    crosses_at: float | None  # unix seconds; None: not within HORIZON_DAYS at this rate (or not growing)
    already: bool  # the last fitted value is at or above the bound


def trend(peaks: Sequence[tuple[float, float]]) -> Trend | None:
    """(unix seconds, daily peak) pairs, oldest first: the least-squares line, or None with fewer than MIN_DAYS."""
    if len(peaks) < MIN_DAYS:
        return None
    xs = [t / DAY for t, _ in peaks]
    ys = [v for _, v in peaks]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return Trend(slope, my + slope * (xs[-1] - mx))


def forecast(peaks: Sequence[tuple[float, float]], bound: float) -> Forecast | None:
    """When the daily peak crosses `bound` at its current rate of growth."""
    fitted = trend(peaks)
    if fitted is None:
        return None
    last_day = peaks[-1][0]
    if fitted.last >= bound:
        return Forecast(bound, last_day, True)
    if fitted.per_day <= 0:
        return Forecast(bound, None, False)
    days = (bound - fitted.last) / fitted.per_day
    return Forecast(bound, last_day + days * DAY if days <= HORIZON_DAYS else None, False)


def next_size(budget: int) -> tuple[str, Size] | None:
    """The smallest server size whose sites' budget is above `budget` (the step `dialup migrate --target-size`
    takes), or None when none is."""
    fitting = [(name, size) for name, size in SIZES.items() if shares(size).budget > budget]
    return min(fitting, key=lambda item: item[1].memory) if fitting else None
