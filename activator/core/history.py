"""Per-site history, pure (issue 16, groundwork): what happened in each minute, folded from single observations,
and minutes rolled up to hours. Every figure is a sum, a maximum or a histogram, so a rollup is exact: an hour's
figures are what the same traffic gives when counted over the hour directly. Time is an argument (unix seconds)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

MINUTE, HOUR = 60, 3600
# Response time histogram bounds, in ms (the last bucket is everything above). A percentile is told as the bound
# of the bucket it falls in: the same from minutes as from the hour they make up.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class Point:
    """One site's figures over one period (a minute, or an hour of them)."""

    site: str
    start: int  # unix seconds, a multiple of `seconds`
    seconds: int  # MINUTE or HOUR
    requests: int = 0
    errors: int = 0  # answered 5xx
    latency: tuple[int, ...] = (0,) * (len(LATENCY_BOUNDS_MS) + 1)  # requests per LATENCY_BOUNDS_MS bucket
    memory_peak: int = 0  # bytes
    memory_sum: int = 0  # of the readings, for the mean
    readings: int = 0
    memory_limit: int = 0  # the largest limit in force
    held_seconds: float = 0.0  # time its container held memory (running or paused), as the monitor saw it
    reserved_byte_seconds: float = 0.0  # its limit over that time (what it reserved: the cost's first term)
    used_byte_seconds: float = 0.0  # what it used over that time (the second)
    cpu_seconds: float = 0.0
    up_seconds: float = 0.0  # observed serving (running, or stopped and able to start)
    down_seconds: float = 0.0  # observed failing (crashing, refused by the budget, unable to start)
    cold_starts: int = 0
    cold_start_ms: float = 0.0  # their durations, summed

    @property
    def memory_mean(self) -> float:
        return self.memory_sum / self.readings if self.readings else 0.0

    @property
    def uptime(self) -> float | None:
        observed = self.up_seconds + self.down_seconds
        return self.up_seconds / observed if observed else None

    def percentile(self, q: float) -> float | None:
        """The response time (ms, a bucket's bound; inf above the last) under which `q` of the requests fell."""
        total = sum(self.latency)
        if not total:
            return None
        rank, seen = q * total, 0
        for i, n in enumerate(self.latency):
            seen += n
            if seen >= rank:
                return float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else float("inf")
        return float("inf")


def merge(a: Point, b: Point) -> Point:
    """Two points of one site folded together (into a's period)."""
    return replace(
        a,
        requests=a.requests + b.requests,
        errors=a.errors + b.errors,
        latency=tuple(x + y for x, y in zip(a.latency, b.latency, strict=True)),
        memory_peak=max(a.memory_peak, b.memory_peak),
        memory_sum=a.memory_sum + b.memory_sum,
        readings=a.readings + b.readings,
        memory_limit=max(a.memory_limit, b.memory_limit),
        held_seconds=a.held_seconds + b.held_seconds,
        reserved_byte_seconds=a.reserved_byte_seconds + b.reserved_byte_seconds,
        used_byte_seconds=a.used_byte_seconds + b.used_byte_seconds,
        cpu_seconds=a.cpu_seconds + b.cpu_seconds,
        up_seconds=a.up_seconds + b.up_seconds,
        down_seconds=a.down_seconds + b.down_seconds,
        cold_starts=a.cold_starts + b.cold_starts,
        cold_start_ms=a.cold_start_ms + b.cold_start_ms,
    )


def roll_up(points: Iterable[Point], seconds: int = HOUR) -> list[Point]:
    """Points folded into periods of `seconds` (minutes into hours), per site, oldest first."""
    folded: dict[tuple[str, int], Point] = {}
    for p in points:
        start = p.start - p.start % seconds
        key = (p.site, start)
        empty = Point(p.site, start, seconds)
        folded[key] = merge(folded.get(key, empty), p)
    return sorted(folded.values(), key=lambda p: (p.start, p.site))


@dataclass
class Minutes:
    """Observations folded into the minute they fall in. Writer: the history recorder (one task); `take` hands
    over the minutes that are over."""

    _open: dict[tuple[str, int], Point] = field(default_factory=dict)

    def _add(self, site: str, ts: float, **figures: object) -> None:
        start = int(ts) - int(ts) % MINUTE
        key = (site, start)
        self._open[key] = merge(self._open.get(key, Point(site, start, MINUTE)), Point(site, start, MINUTE, **figures))  # type: ignore[arg-type]

    def request(self, site: str, ts: float, status: int, duration_ms: float) -> None:
        bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, duration_ms)
        latency = tuple(1 if i == bucket else 0 for i in range(len(LATENCY_BOUNDS_MS) + 1))
        self._add(site, ts, requests=1, errors=1 if status >= 500 else 0, latency=latency)

    def requests(self, site: str, ts: float, count: int) -> None:
        """Requests counted without their status or duration (read from Caddy's metrics)."""
        self._add(site, ts, requests=count)

    def memory(self, site: str, ts: float, used: int, limit: int, seconds: float = 0.0) -> None:
        """A reading of the memory its container uses, standing for the `seconds` since the reading before."""
        self._add(
            site, ts, memory_peak=used, memory_sum=used, readings=1, memory_limit=limit, held_seconds=seconds,
            reserved_byte_seconds=limit * seconds, used_byte_seconds=used * seconds,
        )  # fmt: skip

    def cpu(self, site: str, ts: float, seconds: float) -> None:
        self._add(site, ts, cpu_seconds=seconds)

    def state(self, site: str, ts: float, seconds: float, *, failing: bool) -> None:
        """`seconds` observed up to ts, serving (or able to) or failing."""
        self._add(site, ts, **({"down_seconds": seconds} if failing else {"up_seconds": seconds}))

    def cold_start(self, site: str, ts: float, ms: float) -> None:
        self._add(site, ts, cold_starts=1, cold_start_ms=ms)

    def peek(self) -> list[Point]:
        """The minutes not handed over yet (the one under way): for figures that are to be current."""
        return sorted(self._open.values(), key=lambda p: (p.start, p.site))

    def take(self, now: float) -> list[Point]:
        """The minutes that ended by `now`, oldest first (an observation stamped later in one is not expected)."""
        done = [key for key in self._open if key[1] + MINUTE <= now]
        return sorted((self._open.pop(key) for key in done), key=lambda p: (p.start, p.site))


@dataclass(frozen=True)
class Retention:
    minutes: int = 24 * HOUR  # minute points older than this are rolled up into hours, then dropped
    hours: int = 90 * 24 * HOUR  # hour points older than this are dropped

    def cutoffs(self, now: float) -> tuple[int, int]:
        """(minutes before this start are rolled up, hours before this start are dropped): whole hours only, so
        an hour is rolled up once, from all its minutes."""
        minute_cut = int(now - self.minutes)
        return minute_cut - minute_cut % HOUR, int(now - self.hours)
