"""A site whose network holder died: bring the holder back, and the site inside it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from activator.errors import SiteUnavailable, StartFailed
from activator.interfaces import Clock
from activator.model import Container, ContainerEvent, EventKind, SiteState
from activator.supervisor.containers import Containers
from activator.supervisor.holders import Holders
from activator.supervisor.keeper import Keeper
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.starts import Starter
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")


class HolderRecovery:
    """When a holder dies, its port and namespace go with it and the site's container is cut off in them.
    The holder is brought back (restarted, or made anew) and, for a running or paused site, that recovery is
    the site's transition: requests wait for it as for a start. A persistent site that it cannot bring back
    is tried again later (Keeper)."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        holders: Holders,
        containers: Containers,
        starter: Starter,
        keeper: Keeper,
        work: Work,
        clock: Clock,
    ) -> None:
        self._lifecycle, self._holders, self._containers = lifecycle, holders, containers
        self._starter, self._keeper, self._work, self._clock = starter, keeper, work, clock

    def on_event(self, site: Site, event: ContainerEvent) -> None:
        holder = self._holders.current(site)
        if holder is not None and event.container_id == holder.id and event.action in ("die", "destroy"):
            self._work.spawn(self.lost(site))

    async def lost(self, site: Site) -> None:
        lost = self._holders.forget(site)
        if lost is None:
            return  # already seen (an event and a failed forward both tell of it)
        log.warning("site %s: its network holder %s died", site.name, lost.id[:12])
        self._lifecycle.record(site, EventKind.HOLDER_DIED, "engine", detail=lost.id[:12])
        site.run.interrupt()  # a start or wake probing through it: fail that probe now; it starts again
        if site.state is SiteState.RUNNING and (swap := self._work.transition(site)) is not None:
            # A swap is staging the site's next container in a holder of its own: once it has taken over, the
            # dead holder is nobody's; if it did not, the site is recovered as usual.
            with suppress(Exception):
                await asyncio.shield(swap)
            if self._holders.current(site) is not None:
                return
        if self._recovering(site):
            return
        # Starting or draining: what is under way deals with the container first (a start brings the holder
        # back itself; a drain stops a cut-off container). Then look again.
        for task in (self._work.transition(site), self._work.drain(site)):
            if task is not None:
                with suppress(Exception):
                    await asyncio.shield(task)
        if self._work.transition(site) is not None or self._holders.current(site) is not None:
            return  # a start since brought the holder back and started the container inside it
        if self._recovering(site):
            return
        try:
            holder = await self._holders.ensure(site)
        except Exception as exc:
            self._failed(site, exc)
            self._keeper.retry_later(site)  # a persistent site is not left down with nothing to bring it back
            return
        self._lifecycle.record(site, EventKind.HOLDER_RESTARTED, "engine", detail=holder.id[:12])
        if site.config.strategy.kept_up and site.state is SiteState.STOPPED:
            self._keeper.keep_up(site, "holder")

    def _recovering(self, site: Site) -> bool:
        """A running or paused site (the table says which) begins its recovery as its transition."""
        paused = site.state is SiteState.PAUSED
        if not self._lifecycle.holder_lost(site, "holder"):
            return False
        self._work.begin_transition(site, self._recover(site, paused))
        return True

    async def _recover(self, site: Site, paused: bool) -> None:
        """Stop the cut-off container and bring the holder back; then start the site inside it if requests
        wait or it is persistent.

        Caddy's route changes once, at the end (to the new port, or to the activator). Meanwhile the old port
        is closed, so Caddy's dials fail and fall through to the activator, which holds the requests. A
        route switch now would reload Caddy while those requests wait out Caddy's retry interval, and
        Caddy 2.6 abandons a retry when its config is replaced (a 502)."""
        began = self._clock.monotonic()
        container_id = site.container_id
        try:
            stranded = self._stop_stranded(site, container_id, paused)
            holder, _ = await asyncio.gather(self._holders.ensure(site), stranded)
            self._lifecycle.record(site, EventKind.HOLDER_RESTARTED, "engine", detail=holder.id[:12])
        except asyncio.CancelledError:
            self._lifecycle.start_failed(site, "its recovery was cancelled", "holder", 0.0, None)
            raise
        except Exception as exc:  # the engine failing us too: never left starting with nothing under way
            self._failed(site, exc)
            reason = exc.reason if isinstance(exc, SiteUnavailable) else f"its holder would not come back: {exc!r}"
            public = exc.public if isinstance(exc, SiteUnavailable) else "its network holder would not come back"
            self._lifecycle.start_failed(site, reason, "holder", self._clock.monotonic() - began, None)
            raise StartFailed(site.name, reason, public) from None
        if site.demand.waiting or site.config.strategy.kept_up:
            await self._starter.start(site, "holder")
        else:  # nobody waits: requests arriving from now on start the site anew
            self._lifecycle.stopped(site, EventKind.STOPPED, "holder", detail="its holder was restarted")

    async def _stop_stranded(self, site: Site, container_id: str | None, paused: bool) -> None:
        if container_id is not None:
            status = "paused" if paused else "running"
            await self._containers.stop_stranded(site, Container(container_id, status))

    def _failed(self, site: Site, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, SiteUnavailable) else repr(exc)
        log.warning("site %s: its holder would not come back: %s", site.name, reason)
        self._lifecycle.failed(site, reason)
        self._lifecycle.record(site, EventKind.HOLDER_FAILED, "engine", detail=reason)
