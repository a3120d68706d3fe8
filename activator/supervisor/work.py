"""The work in progress per site (a start, a wake or a recovery; a drain; a stop), and background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from activator.errors import SiteUnavailable
from activator.supervisor.site import Site

log = logging.getLogger("activator.supervisor")
T = TypeVar("T")


class Work:
    """The task handles: per site at most one transition (start, wake, recovery), one drain and one stop of
    its container, and fire-and-forget background tasks. The one writer of them all; `close` cancels and
    awaits every one."""

    def __init__(self) -> None:
        self._transitions: dict[str, asyncio.Task[None]] = {}
        self._drains: dict[str, asyncio.Task[bool]] = {}
        self._stops: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def transition(self, site: Site) -> asyncio.Task[None] | None:
        return self._transitions.get(site.name)

    def drain(self, site: Site) -> asyncio.Task[bool] | None:
        return self._drains.get(site.name)

    def stop(self, site: Site) -> asyncio.Task[None] | None:
        return self._stops.get(site.name)

    def busy(self, site: Site) -> bool:
        """Starting, waking, recovering, draining, or holding requests: not to be paused, stopped or evicted."""
        return site.name in self._transitions or site.name in self._drains or site.demand.waiting > 0

    async def settled(self, site: Site, rounds: int = 20) -> None:
        """Wait until no transition or drain of the site is under way (each may begin another: a few rounds)."""
        for _ in range(rounds):
            under_way = self.transition(site) or self.drain(site)
            if under_way is None:
                return
            with suppress(Exception):
                await asyncio.shield(under_way)

    def begin_transition(self, site: Site, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return _begin(self._transitions, site, work)

    def begin_drain(self, site: Site, work: Coroutine[Any, Any, bool]) -> asyncio.Task[bool]:
        return _begin(self._drains, site, work)

    def begin_stop(self, site: Site, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return _begin(self._stops, site, work)

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run in the background; a failure is logged. Returns the task, for callers that want to await it."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        _retrieved(task)

    async def close(self) -> None:
        # A few rounds: a task cancelled now may leave a last one behind (the event row of its ending).
        for _ in range(3):
            tasks = {*self._transitions.values(), *self._drains.values(), *self._stops.values(), *self._background}
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _begin(tasks: dict[str, asyncio.Task[T]], site: Site, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    if site.name in tasks:
        work.close()
        raise AssertionError(f"site {site.name}: a second task where one runs at a time")
    task = asyncio.ensure_future(_tracked(tasks, site.name, work))
    tasks[site.name] = task
    task.add_done_callback(_retrieved)  # its waiters (if any) get its error; nobody waiting is no reason to warn
    return task


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, SiteUnavailable):
        log.error("task failed: %r", exc)


async def _tracked(tasks: dict[str, asyncio.Task[T]], name: str, work: Coroutine[Any, Any, T]) -> T:
    # Dropped in the task's own finally, not in a done callback: a request arriving the moment after must
    # start anew, not find a finished task (and its old error).
    try:
        return await work
    finally:
        if tasks.get(name) is asyncio.current_task():
            del tasks[name]
