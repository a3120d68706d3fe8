"""Readiness probing schedule: start a few milliseconds apart, back off to a cap."""

from __future__ import annotations

from collections.abc import Iterator

FIRST_DELAY = 0.002
MAX_DELAY = 0.050


def probe_delays(first: float = FIRST_DELAY, cap: float = MAX_DELAY, factor: float = 1.5) -> Iterator[float]:
    """Delays between readiness probes: first, first*factor, ... never above cap, forever."""
    delay = first
    while True:
        yield min(delay, cap)
        delay = min(delay * factor, cap)


def is_ready_status(status: int) -> bool:
    """An HTTP answer below 500 means the app is up and handling requests (a 404 is the app talking)."""
    return status < 500
