"""A task that runs a tick every interval until closed; a failing tick is logged, never fatal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, tick: Callable[[], Awaitable[None]]) -> None:
        self.name, self.interval, self.tick = name, interval, tick
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:  # one bad tick (Caddy restarting, say) must not end the loop
                log.exception("%s tick failed", self.name)
