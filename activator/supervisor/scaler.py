"""The Scaler: a scalable site's second instance, started when its request rate calls for one (core/scaling.py)
and drained away when it no longer does. The instance is a site of its own (config.replica_site), so its start
goes through admission (the budget: idle sites evicted, or a refusal), its stop through a drain, its container
through adoption after a restart, exactly as any site's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from contextlib import suppress

from activator.config import REPLICA_SUFFIX, replica_site
from activator.core.policy import Action
from activator.core.scaling import ScalePolicy, ScaleState, decide
from activator.interfaces import Clock
from activator.model import EventKind, SiteState, Strategy
from activator.supervisor.activity import Activity
from activator.supervisor.drains import Drainer
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.starts import Starter
from activator.supervisor.swaps import Swapper
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

RETRY_AFTER_REFUSAL = 30.0  # seconds before a scale-up that could not start is tried again


class Scaler:
    """Writer of: each scalable site's ScaleState (how many instances it wants, since when its rate is low, until
    when it panics), the reason of its last decision, and when a refused scale-up may be tried again. It asks
    the Starter and the Drainer for the rest; `tick` runs every reaper tick."""

    def __init__(
        self,
        sites: Mapping[str, Site],
        activity: Activity,
        starter: Starter,
        drainer: Drainer,
        swapper: Swapper,
        lifecycle: Lifecycle,
        work: Work,
        clock: Clock,
    ) -> None:
        self._sites, self._activity, self._starter, self._drainer = sites, activity, starter, drainer
        self._swapper = swapper
        self._lifecycle, self._work, self._clock = lifecycle, work, clock
        self._states: dict[str, ScaleState] = {}
        self._reasons: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        self._pending: set[str] = set()  # scale-ups under way
        self._serving: set[str] = set()  # sites whose second instance ran at the last tick (and was not drained)

    def replica(self, site: Site) -> Site | None:
        return self._sites.get(site.name + REPLICA_SUFFIX) if site.config.strategy is Strategy.SCALABLE else None

    def rate(self, site: Site) -> float:
        """The requests per minute that drive its scaling: over its stable window."""
        return self._activity.per_second(site.name, site.config.scale_window) * 60.0

    def instances(self, site: Site) -> int:
        """Instances serving now."""
        replica = self.replica(site)
        serving = [s for s in (site, replica) if s is not None and s.state is SiteState.RUNNING]
        return len(serving)

    def tick(self) -> None:
        now = self._clock.monotonic()
        for site in list(self._sites.values()):
            replica = self.replica(site)
            if replica is not None:
                self._step(site, replica, now)

    def _step(self, site: Site, replica: Site, now: float) -> None:
        cfg = site.config
        policy = ScalePolicy(cfg.scale_threshold, cfg.scale_down_delay, window=cfg.scale_window)
        state = self._states.get(site.name)
        if state is None:  # first look (at startup, after adoption): what runs is what it has
            state = ScaleState(instances=2 if replica.state is SiteState.RUNNING else 1)
        stable = self._activity.per_second(site.name, policy.window) * 60.0
        panic = self._activity.per_second(site.name, policy.panic_window) * 60.0
        decision = decide(policy, state, stable, panic, now)
        self._states[site.name] = decision.state
        if decision.reason:
            self._reasons[site.name] = decision.reason
            log.info("site %s: %s", site.name, decision.reason)
        if self._work.busy(replica) or self._work.busy(site) or site.name in self._pending:
            return  # a start, drain or swap under way: look again next tick
        up = replica.state is SiteState.RUNNING
        if not up and site.name in self._serving:
            # Stopped by someone else (evicted for another site's start, or crashed): not at once again, or
            # the two would take each other's room in turns.
            self._retry_at[site.name] = now + RETRY_AFTER_REFUSAL
        self._serving.discard(site.name)
        if up:
            self._serving.add(site.name)
        stale = up and replica.config.run_image != cfg.run_image  # the site was deployed: the replica runs the old
        if up and (decision.state.instances < 2 or stale):
            why = "a new release: started again with it" if stale else self._reasons.get(site.name, "")
            drain = self._drainer.begin(replica, Action.STOP, "scale", why)
            if drain is not None:
                self._serving.discard(site.name)
                self._work.spawn(self._scaled_down(site, drain, why))
        elif (
            decision.state.instances == 2
            and replica.state is SiteState.STOPPED
            and site.state is SiteState.RUNNING
            and now >= self._retry_at.get(site.name, 0.0)
            and self._lifecycle.retry_in(replica) <= 0  # one that crashed waits out its backoff, as any site
        ):
            self._pending.add(site.name)
            self._work.spawn(self._scale_up(site, replica))

    async def _scale_up(self, site: Site, replica: Site) -> None:
        why = self._reasons.get(site.name, "")
        try:
            settings = replica_site(site.config)  # what the site runs now (its live release)
            if replica.config != settings and self._known(replica):
                await self._swapper.swap(replica, lambda _: settings, "scale")
            if not self._known(replica):
                return  # removed by a reload meanwhile
            start = self._starter.begin(replica, "scale")
            if start is None:
                return
            await asyncio.shield(start)
        except Exception as exc:
            self._retry_at[site.name] = self._clock.monotonic() + RETRY_AFTER_REFUSAL
            detail = f"{why}; the second instance could not start ({exc}); serving on one"
            log.warning("site %s: %s", site.name, detail)
            await self._lifecycle.record(site, EventKind.SCALE_REFUSED, "scale", detail=detail)
            return
        finally:
            self._pending.discard(site.name)
        if replica.state is SiteState.RUNNING:
            self._serving.add(site.name)
            await self._lifecycle.record(site, EventKind.SCALED_UP, "scale", detail=why)

    async def _scaled_down(self, site: Site, drain: asyncio.Task[bool], why: str) -> None:
        with suppress(Exception):
            if await asyncio.shield(drain):
                await self._lifecycle.record(site, EventKind.SCALED_DOWN, "scale", detail=why)

    def _known(self, replica: Site) -> bool:
        return self._sites.get(replica.name) is replica

    def forget(self, site: str) -> None:
        """A site the config lost (a reload)."""
        for table in (self._states, self._reasons, self._retry_at):
            table.pop(site, None)
        self._serving.discard(site)
