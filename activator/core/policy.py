"""Idle and crash policy, pure: what to do with a site now, given what is known of it and the time."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from activator.model import Strategy

FAILING_CRASHES = 5  # this many crashes ...
FAILING_WINDOW = 300.0  # ... within this many seconds: the site is failing
STABLE_AFTER = 60.0  # up this long after a start: the backoff starts again from its first step


class Action(enum.Enum):
    KEEP = "keep"
    PAUSE = "pause"
    STOP = "stop"


@dataclass(frozen=True)
class IdleView:
    strategy: Strategy
    running: bool  # running and routed (not starting, draining or stopped)
    paused: bool
    in_flight: int  # requests, streams and WebSockets open through Caddy or the activator
    last_activity: float  # the later of the last request and the moment it started or woke
    pause_after: float | None  # None: never pause
    idle_timeout: float | None  # None: never stop for idleness


def idle_action(view: IdleView, now: float) -> Action:
    if view.strategy.kept_up or view.in_flight > 0:
        return Action.KEEP
    idle = now - view.last_activity
    if (view.running or view.paused) and view.idle_timeout is not None and idle >= view.idle_timeout:
        return Action.STOP
    if view.running and view.pause_after is not None and idle >= view.pause_after:
        return Action.PAUSE
    return Action.KEEP


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    cap: float = 60.0

    def delay(self, consecutive: int) -> float:
        """Wait before restart number `consecutive` (1 = after the first crash): first, doubling to cap."""
        if consecutive <= 0:
            return 0.0
        return min(self.cap, self.first * 2.0 ** (consecutive - 1))


@dataclass(frozen=True)
class CrashRecord:
    """What is remembered of a site's crashes."""

    times: tuple[float, ...] = ()  # recent crash times, oldest first
    consecutive: int = 0  # crashes since the site last stayed up STABLE_AFTER seconds

    def crashed(self, now: float, up_since: float | None) -> CrashRecord:
        stable = up_since is not None and now - up_since >= STABLE_AFTER
        recent = tuple(t for t in self.times if now - t < FAILING_WINDOW)
        return CrashRecord(times=(*recent, now), consecutive=1 if stable else self.consecutive + 1)

    def ran(self, now: float, up_since: float | None) -> CrashRecord:
        """A run that started at up_since ended without a crash (stopped, from here or outside): if it lasted
        STABLE_AFTER, the next crash starts the backoff from its first step again."""
        if up_since is not None and now - up_since >= STABLE_AFTER and self.consecutive:
            return CrashRecord(times=self.times, consecutive=0)
        return self

    def failing(self, now: float) -> bool:
        return sum(1 for t in self.times if now - t < FAILING_WINDOW) >= FAILING_CRASHES

    def next_try(self, backoff: Backoff) -> float:
        """The earliest time the site may be started again."""
        if not self.times:
            return 0.0
        return self.times[-1] + backoff.delay(self.consecutive)
