"""Drains: route a site to the activator, wait for its open work, then pause or stop it."""

from __future__ import annotations

import asyncio
import logging

from activator.core.policy import Action
from activator.interfaces import Clock, ContainerRuntime, Router
from activator.model import EventKind, Network, SiteState
from activator.supervisor.containers import Containers
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.routes import Routes
from activator.supervisor.site import Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

RUNNING, PAUSED = SiteState.RUNNING, SiteState.PAUSED
DRAIN_POLL = 0.05  # seconds between looks at the in-flight counts while draining


class Drainer:
    """Drain first, then pause or stop. A request that arrives before the pause or stop keeps the site.
    Whatever fails, and whoever cancels it, a drain ends in a state the request path can go on from."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        router: Router,
        routes: Routes,
        lifecycle: Lifecycle,
        containers: Containers,
        holders: Holders,
        work: Work,
        clock: Clock,
    ) -> None:
        self._runtime, self._router, self._routes = runtime, router, routes
        self._lifecycle, self._containers, self._holders = lifecycle, containers, holders
        self._work, self._clock = work, clock

    def begin(self, site: Site, action: Action, cause: str, detail: str = "") -> asyncio.Task[bool] | None:
        """Drain the site (or join its drain under way); None when it cannot be drained now. The task ends
        True once the site is paused or stopped, False when it was kept."""
        if (running := self._work.drain(site)) is not None:
            return running
        if self._work.busy(site) or site.container_id is None or site.state not in (RUNNING, PAUSED):
            return None  # starting, wanted, or gone meanwhile: not now (a race, not a bug: nothing to record)
        paused = site.state is SiteState.PAUSED
        if not self._lifecycle.begin_drain(site, cause):
            return None
        return self._work.begin_drain(site, self._drain(site, action, cause, detail, paused))

    async def _drain(self, site: Site, action: Action, cause: str, detail: str, paused: bool) -> bool:
        cfg, began = site.config, self._clock.monotonic()
        step = "route"
        try:
            if not paused:
                if not await self._routes.settle(site.name, cfg.drain_timeout) and self._alive(site):
                    self._lifecycle.keep(site, "Caddy's route could not be switched to the activator")
                    return False
                step = "wait"
                if not await self.open_work_ended(site, began + cfg.drain_timeout) and self._alive(site):
                    self._lifecycle.keep(site, "a request arrived while it drained")
                    return False
            elif site.demand.waiting:  # a request came for the paused site: it wakes it, rather than lose it
                self._lifecycle.paused(site, EventKind.PAUSED, "kept", 0.0, record=False)
                return False
            container_id = site.container_id
            assert container_id is not None
            elapsed = self._clock.monotonic() - began
            if action is Action.PAUSE and not self._alive(site):
                action = Action.STOP  # a cut-off container is stopped, not paused: it can never serve where it is
            if action is Action.PAUSE:
                step = "pause"
                await self._runtime.pause(container_id)
                written = self._lifecycle.paused(site, _kind(action, cause), cause, elapsed, detail)
            else:
                step = "stop"
                await asyncio.shield(self._containers.stop(site, container_id, cfg.stop_grace, paused=paused))
                written = self._lifecycle.stopped(site, _kind(action, cause), cause, elapsed, detail)
            if written is not None:
                await written
            return True
        except asyncio.CancelledError:
            self._abandoned(site, step, paused)
            raise
        except Exception as exc:
            log.warning("site %s: its drain failed at the %s: %r", cfg.name, step, exc)
            return await self._failed(site, step, paused)

    async def open_work_ended(self, site: Site, deadline: float) -> bool:
        """Wait until nothing is open to the container (at most until the deadline). False if a request
        arrived meanwhile: the site is to be kept."""
        # A second instance's route file has no activator behind it: a request that read the file just before the
        # switch is counted by Caddy a moment after it (then dials the old port), so its quiet is read twice.
        quiet_needed, quiet = (2 if site.config.replica_of else 1), 0
        while not site.demand.waiting:
            open_now = site.open_requests(await self._router.in_flight())
            quiet = quiet + 1 if open_now == 0 else 0
            if quiet >= quiet_needed:
                break
            if self._clock.monotonic() > deadline:
                log.warning("site %s: %d requests still open after drain_timeout", site.name, open_now)
                break
            await self._clock.sleep(DRAIN_POLL)
        return not site.demand.waiting

    def _alive(self, site: Site) -> bool:
        """Its container can still serve where it is: it did not die meanwhile, nor its holder. A site that
        cannot is stopped by the drain even if a request arrived: that request then starts it anew."""
        holder_gone = site.config.network is Network.HOLDER and self._holders.current(site) is None
        return not (site.run.ended or holder_gone)

    def _abandoned(self, site: Site, step: str, paused: bool) -> None:
        """Cancelled (the activator is shutting down): say what is known, without awaiting anything."""
        if step in ("route", "wait") and self._alive(site):
            self._lifecycle.keep(site, "its drain was cancelled")
        elif step == "pause" or paused:
            self._lifecycle.paused(site, EventKind.PAUSED, "cancelled", 0.0)  # a wake copes if it is not
        else:  # the stop goes on by itself (Containers.stop), and the next start waits for it
            self._lifecycle.stopped(site, EventKind.STOPPED, "cancelled")

    async def _failed(self, site: Site, step: str, paused: bool) -> bool:
        """The pause or stop (or a look at Caddy) failed: find out what the container is now, and say so.
        Nothing is left running in the background that could stop a later start."""
        await self._containers.stopped(site)
        try:
            found = await self._runtime.find(site.config)
        except Exception:
            found = None  # unknown: what the failed step most likely left (a wake or a start copes with either)
            maybe_paused = step == "pause" or paused
        if found is not None and found.running:
            self._lifecycle.keep(site, f"its {step} failed")
            return False
        if (found is not None and found.paused) or (found is None and maybe_paused):
            self._lifecycle.paused(site, EventKind.PAUSED, f"{step} failed", 0.0)
        else:
            self._lifecycle.stopped(site, EventKind.STOPPED, f"{step} failed")
        return True


def _kind(action: Action, cause: str) -> EventKind:
    if cause not in ("idle", "scale"):  # a scalable site's second instance, drained by the Scaler: not evicted
        return EventKind.EVICTED
    return EventKind.PAUSED if action is Action.PAUSE else EventKind.STOPPED
