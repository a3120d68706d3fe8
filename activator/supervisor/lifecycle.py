"""Lifecycle: the one writer of every site's record (state, container, port, crashes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from activator.config import SiteConfig
from activator.core.transitions import Event, Facts, decide
from activator.interfaces import Clock, EventLog
from activator.metrics import NOT_ALLOWED
from activator.model import EventKind, SiteState
from activator.supervisor.routes import Routes
from activator.supervisor.site import Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")


class Lifecycle:
    """Every change of a site's state is a row of the transition table (core/transitions.py), applied here
    and nowhere else, together with what goes with it: the port, the container, the crash record, the event
    row, and the route Caddy should have (on the container while it runs, else on the activator). Other
    parts ask with the methods below; a change the table does not allow is refused, logged and recorded.
    All of it happens before the method returns (no await in between): the record is the one truth."""

    def __init__(self, events: EventLog, clock: Clock, routes: Routes, work: Work) -> None:
        self._events, self._clock, self._routes, self._work = events, clock, routes, work
        # Told of every change applied: the site, the event, and whether a crash was counted with it.
        self.observers: list[Callable[[Site, Event, bool], None]] = []

    # -- questions -----------------------------------------------------------------------------

    def failing(self, site: Site) -> bool:
        """Crashed too often lately, and its backoff has not run out."""
        now = self._clock.monotonic()
        return site.crashes.failing(now) and now < site.crashes.next_try(site.backoff)

    def retry_in(self, site: Site) -> float:
        return max(0.0, site.crashes.next_try(site.backoff) - self._clock.monotonic())

    # -- the table -----------------------------------------------------------------------------

    def _apply(self, site: Site, event: Event, cause: str) -> bool:
        decision = decide(site.state, event, Facts(site.demand.waiting, not self.failing(site)))
        if not decision.allowed:
            NOT_ALLOWED.labels(site.name).inc()
            log.error("site %s: %s (cause: %s)", site.name, decision.refusal, cause)
            self.record(site, EventKind.NOT_ALLOWED, cause, detail=decision.refusal)
            return False
        if decision.target is not site.state:
            log.debug("site %s: %s -> %s (%s)", site.name, site.state, decision.target, event)
        site._state = decision.target
        return True

    def _tell(self, site: Site, event: Event, crashed: bool = False) -> None:
        for observer in self.observers:
            observer(site, event, crashed)

    def record(
        self, site: Site | str, kind: EventKind, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> asyncio.Task[None]:
        """Write an event row in the background; await the task where its order matters. It never raises:
        a row that cannot be written (a full disk) is logged, and changes no answer."""
        name = site if isinstance(site, str) else site.name
        return self._work.spawn(self._write(name, kind, cause, duration_ms, detail))

    async def _write(self, site: str, kind: EventKind, cause: str, duration_ms: float | None, detail: str) -> None:
        try:
            await self._events.record(site, kind, cause, duration_ms, detail)
        except Exception as exc:
            log.error("could not write the event row %s %s (%s): %r", site, kind, detail, exc)

    # -- starting ------------------------------------------------------------------------------

    def begin_start(self, site: Site, cause: str) -> bool:
        """A start (from stopped) or a wake (from paused) begins."""
        return self._apply(site, Event.WAKE if site.state is SiteState.PAUSED else Event.START, cause)

    def up(self, site: Site, port: int, cause: str, elapsed: float, *, woke: bool) -> asyncio.Task[None] | None:
        if not self._apply(site, Event.UP, cause):
            return None
        site._host_port, site._up_since = port, self._clock.monotonic()
        self._routes.want(site.name, port)  # held requests go now; Caddy's route follows in the background
        what = "woke" if woke else "started"
        log.info("site %s: %s in %.0f ms (%s)", site.name, what, elapsed * 1000, cause)
        written = self.record(site, EventKind.WAKE if woke else EventKind.START, cause, elapsed * 1000)
        self._tell(site, Event.UP)
        return written

    def start_failed(
        self, site: Site, reason: str, cause: str, elapsed: float, crash: EventKind | None
    ) -> asyncio.Task[None] | None:
        """The start gave up. `crash` (CRASH or OOM) when the app is to blame, None when something else is."""
        if not self._apply(site, Event.START_FAILED, cause):
            return None
        site._host_port, site._failure = None, reason
        self._routes.want(site.name, None)
        written = self.record(site, EventKind.START_FAILED, cause, elapsed * 1000, reason)
        if crash is not None:
            self._count_crash(site, crash, "start", reason, up_since=None)  # it never ran: no stable run
        self._tell(site, Event.START_FAILED, crash is not None)
        return written

    def holder_lost(self, site: Site, cause: str) -> bool:
        """Its holder died under it. True when the site was running or paused: the recovery becomes its
        transition, and Caddy's route is left alone until the recovery ends (a route change now would turn
        Caddy's retries into 502s: README, known limits). False otherwise: a start or drain under way deals
        with its container, and a stopped site only needs the holder back."""
        before = site.state
        if not self._apply(site, Event.HOLDER_LOST, cause) or site.state is before:
            return False
        site._host_port = None
        return True

    # -- draining, pausing, stopping -----------------------------------------------------------

    def begin_drain(self, site: Site, cause: str) -> bool:
        if not self._apply(site, Event.DRAIN, cause):
            return False
        self._routes.want(site.name, None)
        return True

    def keep(self, site: Site, why: str) -> None:
        """The drain gives the site back, running: Caddy's route goes back to its container."""
        if self._apply(site, Event.KEEP, why):
            log.info("site %s: kept (%s)", site.name, why)
            self._routes.want(site.name, site.host_port)

    def paused(
        self, site: Site, kind: EventKind, cause: str, elapsed: float, detail: str = "", *, record: bool = True
    ) -> asyncio.Task[None] | None:
        """The drain's pause is done (or a drain of a paused site gives it back, paused: record=False)."""
        if not self._apply(site, Event.PAUSED, cause) or not record:
            return None
        log.info("site %s: %s (%s%s)", site.name, kind, cause, f": {detail}" if detail else "")
        return self.record(site, kind, cause, elapsed * 1000, detail)

    def stopped(
        self, site: Site, kind: EventKind, cause: str, elapsed: float | None = None, detail: str = ""
    ) -> asyncio.Task[None] | None:
        """Our stop is done (or a holder's recovery ended with nobody waiting)."""
        if not self._apply(site, Event.STOPPED, cause):
            return None
        site._host_port = None
        site._crashes = site.crashes.ran(self._clock.monotonic(), site.up_since)
        self._routes.want(site.name, None)
        log.info("site %s: %s (%s%s)", site.name, kind, cause, f": {detail}" if detail else "")
        return self.record(site, kind, cause, None if elapsed is None else elapsed * 1000, detail)

    def died(self, site: Site, reason: str) -> bool:
        """Its container ended outside our control (a crash, an OOM kill, a stop from outside): stopped, and
        Caddy's route back on the activator. False if it was not running or paused (a start or drain under
        way decides what the death means; a stopped site stays so)."""
        before = site.state
        if not self._apply(site, Event.DIED, reason) or site.state is before:
            return False
        site._host_port = None
        site._crashes = site.crashes.ran(self._clock.monotonic(), site.up_since)
        self._routes.want(site.name, None)
        log.warning("site %s: %s", site.name, reason)
        return True

    def crashed(self, site: Site, kind: EventKind, cause: str, reason: str) -> None:
        """Count the crash (or OOM kill) of a site that ran: the backoff's next step (its first, if it had
        run STABLE_AFTER), an event row, and the observers told."""
        self._count_crash(site, kind, cause, reason, up_since=site.up_since)
        self._tell(site, Event.DIED, True)

    def _count_crash(self, site: Site, kind: EventKind, cause: str, reason: str, up_since: float | None) -> None:
        site._failure = reason
        site._crashes = site.crashes.crashed(self._clock.monotonic(), up_since)
        self.record(site, kind, cause, detail=reason)

    def failed(self, site: Site, reason: str) -> None:
        """Why the site is down, for status, when no start failed (its holder would not come back)."""
        site._failure = reason

    # -- the container -------------------------------------------------------------------------

    def adopted(self, site: Site, port: int, *, running: bool) -> None:
        if self._apply(site, Event.ADOPT_RUNNING if running else Event.ADOPT_PAUSED, "startup"):
            site._host_port, site._up_since = port, self._clock.monotonic()  # a fresh idle window
            self._routes.want(site.name, port if running else None)

    def configured(self, site: Site, config: SiteConfig, cause: str) -> None:
        """Its settings change (a deploy's new image, a reload): the next container made for it uses them."""
        if config != site.config:
            log.info(
                "site %s: new settings (%s)%s",
                site.name,
                cause,
                f": image {config.run_image}" if config.run_image != site.config.run_image else "",
            )
        site._site_config = config

    def swapped(self, site: Site, container_id: str, joined: str | None, port: int, cause: str) -> bool:
        """A deploy's container, started beside the old one and answering, takes the site over: the record
        and Caddy's route move to it at once; the old container is the swap's to drain and remove."""
        if not self._apply(site, Event.SWAPPED, cause):
            return False
        site._container_id, site._joined, site._host_port = container_id, joined, port
        site._up_since = self._clock.monotonic()
        site.run.renewed()  # what the engine said of the old container's run is not the new one's
        self._routes.want(site.name, port)
        log.info("site %s: now served by container %s on port %d (%s)", site.name, container_id[:12], port, cause)
        self._tell(site, Event.SWAPPED)
        return True

    def container(self, site: Site, container_id: str | None, joined: str | None = None) -> None:
        """The site's container is now this one (created or found), or none (removed)."""
        site._container_id, site._joined = container_id, joined if container_id else None
