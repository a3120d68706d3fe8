"""Persistent sites kept up: started with the activator, restarted after a crash, retried after a failure."""

from __future__ import annotations

import asyncio
import logging

from activator.errors import SiteUnavailable
from activator.interfaces import Cancellable, Clock
from activator.model import SiteState, Strategy
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.starts import Starter
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

RESTART_SLACK = 0.01  # seconds: a restart timer that fires a hair early (two clocks) waits this much more


class Keeper:
    """Starts persistent sites, and starts them again: after a crash when the crash backoff allows, after
    any other failed start (the engine, the budget, a holder that will not come up) backing off the same way.
    Writer of: the restart timers, and the failed starts in a row that were not crashes."""

    def __init__(self, starter: Starter, lifecycle: Lifecycle, work: Work, clock: Clock) -> None:
        self._starter, self._lifecycle, self._work, self._clock = starter, lifecycle, work, clock
        self._restarts: dict[str, Cancellable] = {}
        self._retries: dict[str, int] = {}
        lifecycle.on_crash.append(self._after_crash)

    def keep_up(self, site: Site, cause: str) -> None:
        """Start the site now (or once its crash backoff allows); if it is persistent and the start fails,
        try again later."""
        if self._lifecycle.failing(site):
            self._schedule(site, self._lifecycle.retry_in(site) + RESTART_SLACK)
            return
        start = self._starter.begin(site, cause)
        if start is not None:
            self.watch(site, start)

    def watch(self, site: Site, transition: asyncio.Task[None]) -> None:
        """Follow a transition of the site (a start, a holder's recovery): if it fails for a reason that is
        no crash, a persistent site is tried again later. Its failure is otherwise its waiters' to report."""
        self._work.spawn(self._kept_up(site, transition))

    async def _kept_up(self, site: Site, start: asyncio.Task[None]) -> None:
        crashes = site.crashes
        try:
            await asyncio.shield(start)
        except SiteUnavailable:
            if site.crashes is crashes:  # not a crash (those are scheduled by _after_crash)
                self.retry_later(site)
            return
        self._retries.pop(site.name, None)

    def retry_later(self, site: Site) -> None:
        """A persistent site is down for a reason that is not a crash: try again, backing off."""
        if site.config.strategy is Strategy.PERSISTENT:
            tries = self._retries[site.name] = self._retries.get(site.name, 0) + 1
            self._schedule(site, site.backoff.delay(tries))

    def _after_crash(self, site: Site) -> None:
        if site.config.strategy is Strategy.PERSISTENT:
            self._schedule(site, self._lifecycle.retry_in(site))

    def _schedule(self, site: Site, delay: float) -> None:
        if (pending := self._restarts.pop(site.name, None)) is not None:
            pending.cancel()
        log.info("site %s: restarting in %.1f s", site.name, delay)
        self._restarts[site.name] = self._clock.call_later(delay, lambda: self._restart(site))

    def _restart(self, site: Site) -> None:
        self._restarts.pop(site.name, None)
        if site.state is not SiteState.STOPPED or self._work.transition(site) or self._work.drain(site):
            return  # a request started it meanwhile, or it is being taken care of
        self.keep_up(site, "restart")  # (which waits a little more if the timer ran a hair ahead of our clock)

    def pending(self, site: Site) -> bool:
        return site.name in self._restarts

    def close(self) -> None:
        for pending in self._restarts.values():
            pending.cancel()
        self._restarts.clear()
