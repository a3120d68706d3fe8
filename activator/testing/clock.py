"""A fake clock: virtual time that moves only when a test advances it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType


async def settle(rounds: int = 10_000) -> None:
    """Let every task that can run, run, until all of them wait (on virtual time, a gate, or an event)."""
    loop = asyncio.get_running_loop()
    quiet = 0
    for _ in range(rounds):
        await asyncio.sleep(0)
        # CPython's loop keeps its runnable callbacks in _ready: empty a few times in a row means all wait.
        quiet = quiet + 1 if not getattr(loop, "_ready", None) else 0
        if quiet >= 3:
            return
    raise AssertionError("the tasks never settled: something spins without waiting")


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The Clock on virtual time: `advance(seconds)` runs what falls due, in order, letting tasks settle after
    each; nothing else moves it. Sleeps, timeouts and timers all follow it."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def call_later(self, seconds: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(self._now + max(0.0, seconds), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await woken
        finally:
            timer.cancel()

    def timeout(self, seconds: float) -> _Timeout:
        return _Timeout(self, seconds)

    async def advance(self, seconds: float) -> None:
        target = self._now + seconds
        await settle()
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, timer.when)
            timer.callback()
            await settle()
        self._now = target
        await settle()

    async def run_until(self, done: Callable[[], bool], limit: float = 600.0, step: float = 0.01) -> None:
        """Advance in steps until done() (failing after `limit` virtual seconds)."""
        deadline = self._now + limit
        await settle()
        while not done():
            if self._now >= deadline:
                raise AssertionError(f"not done after {limit} virtual seconds")
            await self.advance(step)


class _Timeout:
    """asyncio.timeout on virtual time: an asyncio.Timeout with no deadline, made due when the clock says."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self._clock, self._seconds = clock, seconds
        self._inner = asyncio.timeout(None)
        self._timer: _Timer | None = None

    async def __aenter__(self) -> _Timeout:
        await self._inner.__aenter__()
        self._timer = self._clock.call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        if not self._inner.expired():
            self._inner.reschedule(asyncio.get_running_loop().time())  # due now: the loop cancels the block

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if self._timer is not None:
            self._timer.cancel()
        await self._inner.__aexit__(kind, exc, tb)
        return None
