"""Persistent sites kept up: started with the activator, restarted after a crash, retried after a failure."""

from __future__ import annotations

import logging

from activator.core.transitions import Event
from activator.interfaces import Cancellable, Clock
from activator.model import SiteState
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.starts import Starter
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

RESTART_SLACK = 0.01  # seconds: a restart timer that fires a hair early (two clocks) waits this much more


class Keeper:
    """Starts persistent sites, and starts them again, whoever started them last (a request, a restart, a
    holder's recovery): after a crash when the crash backoff allows, after any other failed start (the engine,
    the budget, a holder that will not come up) backing off the same way. It watches the Lifecycle's changes,
    so no failure goes unseen. Writer of: the restart timers, and the failed starts in a row that were not
    crashes."""

    def __init__(self, starter: Starter, lifecycle: Lifecycle, work: Work, clock: Clock) -> None:
        self._starter, self._lifecycle, self._work, self._clock = starter, lifecycle, work, clock
        self._restarts: dict[str, Cancellable] = {}
        self._retries: dict[str, int] = {}
        lifecycle.observers.append(self._observe)

    def keep_up(self, site: Site, cause: str) -> None:
        """Start the site now, or once its crash backoff allows."""
        if self._lifecycle.failing(site):
            self._schedule(site, self._lifecycle.retry_in(site) + RESTART_SLACK)
            return
        self._starter.begin(site, cause)

    def retry_later(self, site: Site) -> None:
        """A persistent site is down for a reason that is not a crash: try again, backing off."""
        if site.config.strategy.kept_up:
            tries = self._retries[site.name] = self._retries.get(site.name, 0) + 1
            self._schedule(site, site.backoff.delay(tries))

    def forget(self, site: Site) -> None:
        """The site left the config: no restart of it is pending any more."""
        if (pending := self._restarts.pop(site.name, None)) is not None:
            pending.cancel()
        self._retries.pop(site.name, None)

    def _observe(self, site: Site, event: Event, crashed: bool) -> None:
        if not site.config.strategy.kept_up:
            return
        if event is Event.UP:
            self._retries.pop(site.name, None)
        elif crashed:
            self._schedule(site, self._lifecycle.retry_in(site))
        elif event is Event.START_FAILED:
            self.retry_later(site)

    def _schedule(self, site: Site, delay: float) -> None:
        if (pending := self._restarts.pop(site.name, None)) is not None:
            pending.cancel()
        log.info("site %s: restarting in %.1f s", site.name, delay)
        self._restarts[site.name] = self._clock.call_later(delay, lambda: self._restart(site))

    def _restart(self, site: Site) -> None:
        self._restarts.pop(site.name, None)
        if site.state is not SiteState.STOPPED or self._work.transition(site) or self._work.drain(site):
            return  # started meanwhile, or being taken care of: its outcome comes back through _observe
        self.keep_up(site, "restart")  # (which waits a little more if the timer ran a hair ahead of our clock)

    def pending(self, site: Site) -> bool:
        return site.name in self._restarts

    def close(self) -> None:
        for pending in self._restarts.values():
            pending.cancel()
        self._restarts.clear()
