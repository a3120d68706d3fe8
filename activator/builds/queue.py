"""The build queue: at most `parallel` builds at once, the rest waiting their turn in order, told their place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class BuildQueue:
    """First come, first built. Writer of: who builds now, and who waits."""

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel
        self.building = 0
        self.most_at_once = 0  # the high-water mark of builds at once (status, tests)
        self._waiting: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def resize(self, parallel: int) -> None:
        """A new width (a reload): more slots go to the builds waiting at once; fewer apply as builds end."""
        self.parallel = parallel
        while self.building < self.parallel and self._waiting:
            turn = self._waiting.pop(0)
            if not turn.done():
                self.building += 1
                turn.set_result(None)

    @asynccontextmanager
    async def slot(self, told: Callable[[int], None]) -> AsyncIterator[None]:
        """Hold a build slot for the block; `told(place)` is called while waiting (1: next)."""
        if self.building >= self.parallel or self._waiting:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            told(len(self._waiting))
            try:
                await turn
            except asyncio.CancelledError:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                elif turn.done() and not turn.cancelled():
                    self._release()  # handed a slot as it was cancelled: pass it on
                raise
        else:
            self.building += 1
        self.most_at_once = max(self.most_at_once, self.building)
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            turn = self._waiting.pop(0)
            if not turn.done():
                turn.set_result(None)  # the slot passes straight to the next in line
                return
        self.building -= 1
