"""Money and waste, pure (issue 16, groundwork), after OpenCost's allocation: over a period, each site is charged
the server's price times its share of the memory the sites may hold, its share being max(reserved, used): the
limit it held while running (reserved) or what it really used, whichever is more. What no site is charged is
idle. Waste is what a site reserved and never used at its peak; a recommendation is the limit that would hold
its peak with headroom."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from activator.core.history import Point

MiB = 1 << 20
HEADROOM = 1.25  # a recommended limit holds the peak and a quarter more
# The limits recommended: half steps between powers of two (16, 24, 32, 48, 64, 96, 128 MiB ...).
STEPS = sorted({int(m * 2**e) for e in range(4, 14) for m in (1.0, 1.5)})
WORTH_SAYING = 0.25  # a smaller limit is recommended only when it frees at least this share of the current one


@dataclass(frozen=True)
class Usage:
    """One site over the period, from its history: byte-hours of its limit while it held memory, of what it
    used (the mean of its readings times the hours they cover), and its peak."""

    site: str
    reserved: float  # byte-hours
    used: float  # byte-hours
    peak: int  # bytes
    limit: int  # bytes, its limit now


def usage_of(site: str, points: Iterable[Point], limit: int) -> Usage:
    """A site's usage over its history points (`limit`: the one it has now)."""
    points = list(points)
    return Usage(
        site,
        reserved=sum(p.reserved_byte_seconds for p in points) / 3600,
        used=sum(p.used_byte_seconds for p in points) / 3600,
        peak=max((p.memory_peak for p in points), default=0),
        limit=limit,
    )


@dataclass(frozen=True)
class Charge:
    site: str
    cost: float  # in the price's currency, for the period
    share: float  # of the capacity's byte-hours
    waste: int  # bytes: its limit less its peak (0 if the peak reached it)


@dataclass(frozen=True)
class Allocation:
    charges: tuple[Charge, ...]
    idle: float  # what no site was charged
    price: float


def allocate(price: float, capacity: float, usages: Iterable[Usage]) -> Allocation:
    """`price` for the period; `capacity`: the byte-hours the sites may hold (the budget times the period's
    hours). A site's charge is price * max(reserved, used) / capacity; what is left is idle (never below zero:
    usage above the capacity is charged at most the price, shared in proportion)."""
    usages = list(usages)
    weights = {u.site: max(u.reserved, u.used) for u in usages}
    total = sum(weights.values())
    scale = capacity if total <= capacity else total
    charges = tuple(
        Charge(u.site, price * weights[u.site] / scale, weights[u.site] / scale, max(0, u.limit - u.peak))
        for u in usages
    )
    return Allocation(charges, max(0.0, price - sum(c.cost for c in charges)), price)


@dataclass(frozen=True)
class Recommendation:
    site: str
    limit: int
    peak: int
    suggested: int
    days: int

    def __str__(self) -> str:
        verb = "would hold it" if self.suggested < self.limit else "would give it room"
        return (
            f"{self.site}'s peak in {self.days} days was {_mib(self.peak)} of {_mib(self.limit)}: a "
            f"{_mib(self.suggested)} limit {verb}"
        )


def recommend(site: str, limit: int, peak: int, days: int) -> Recommendation | None:
    """A limit for the site's peak over `days`, if it differs enough from the one it has: smaller when that frees a
    quarter of it or more, larger when the peak came within the headroom of the limit."""
    if peak <= 0:
        return None
    want = peak * HEADROOM
    suggested = next((s * MiB for s in STEPS if s * MiB >= want), math.ceil(want / MiB) * MiB)
    if suggested <= limit * (1 - WORTH_SAYING) or suggested > limit:
        return Recommendation(site, limit, peak, suggested, days)
    return None


def _mib(n: int) -> str:
    return f"{n / MiB:.0f} MiB"
