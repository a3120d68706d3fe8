"""Per-site request rates over sliding windows, and the time of the last request. Pure: `now` is an argument."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

BUCKET = 1.0  # seconds per bucket
HORIZON = 300.0  # the longest window kept (5 minutes)


@dataclass
class _Series:
    buckets: deque[tuple[int, int]] = field(default_factory=deque)  # (bucket index, count), oldest first
    last: float | None = None


class Rates:
    """Counts requests per site in one-second buckets and answers rates over any window up to 5 minutes."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}

    def record(self, site: str, ts: float, count: int = 1) -> None:
        series = self._series.setdefault(site, _Series())
        index = int(ts // BUCKET)
        if series.buckets and series.buckets[-1][0] == index:
            series.buckets[-1] = (index, series.buckets[-1][1] + count)
        elif series.buckets and series.buckets[-1][0] > index:
            # A log line that arrives late (Caddy logs a request when it ends): add it where it belongs.
            series.buckets = deque(sorted([*series.buckets, (index, count)]))
            _merge(series.buckets)
        else:
            series.buckets.append((index, count))
        if series.last is None or ts > series.last:
            series.last = ts
        self._trim(series, ts)

    def last_request(self, site: str) -> float | None:
        series = self._series.get(site)
        return series.last if series else None

    def count(self, site: str, now: float, window: float) -> int:
        series = self._series.get(site)
        if series is None:
            return 0
        self._trim(series, now)
        oldest = int((now - window) // BUCKET)
        return sum(n for index, n in series.buckets if index > oldest)

    def per_second(self, site: str, now: float, window: float, *, read_counts: bool) -> float:
        """Requests per second over the last `window` seconds, divided by the time the counted buckets cover.
        Requests stamped when they were made (the access log) cover the buckets up to now: the current one only
        in part. Counts stamped when they were read (Caddy's metrics, every tick: `read_counts`) each cover the
        time since the read before, so the buckets in the window cover the whole window. Either other way, a
        short window is biased by up to a half at some moments of a second (measured both ways)."""
        oldest = int((now - window) // BUCKET)
        covered = window if read_counts else now - (oldest + 1) * BUCKET
        return self.count(site, now, window) / covered if covered > 0 else 0.0

    def per_minute(self, site: str, now: float, window: float = 60.0) -> float:
        """Requests per minute, averaged over the last `window` seconds."""
        return self.count(site, now, window) * 60.0 / window

    @staticmethod
    def _trim(series: _Series, now: float) -> None:
        oldest = int((now - HORIZON) // BUCKET)
        while series.buckets and series.buckets[0][0] <= oldest:
            series.buckets.popleft()


def _merge(buckets: deque[tuple[int, int]]) -> None:
    merged: list[tuple[int, int]] = []
    for index, n in buckets:
        if merged and merged[-1][0] == index:
            merged[-1] = (index, merged[-1][1] + n)
        else:
            merged.append((index, n))
    buckets.clear()
    buckets.extend(merged)
