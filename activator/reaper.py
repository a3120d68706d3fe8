"""The reaper: every tick, read activity when it is read rather than streamed (Caddy's metrics), then pause or stop
the sites the idle policy gives up on (the Drainer drains them)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from activator.core.policy import Action, IdleView, idle_action
from activator.model import SiteState
from activator.periodic import Periodic
from activator.supervisor import Supervisor
from activator.supervisor.site import Site

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self, supervisor: Supervisor, interval: float, poll: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """`poll`: reads the requests made since its last call into the supervisor's Activity, False if it could
        not (then no site is taken down this tick: its activity is not known)."""
        self.supervisor = supervisor
        self.poll = poll
        self.loop = Periodic("reaper", interval, self.tick)

    async def tick(self) -> None:
        if self.poll is not None and not await self.poll():
            return
        sup = self.supervisor
        sup.limiter.tick()
        sup.scaler.tick()
        now = sup.clock.monotonic()
        # Ask Caddy for in-flight counts only when some site would be paused or stopped without them.
        idle = [s for s in sup.sites.values() if self._decide(s, {}, now) is not Action.KEEP]
        if not idle:
            return
        in_flight = await sup.router.in_flight()
        for site in idle:
            action = self._decide(site, in_flight, now)
            if action is not Action.KEEP:
                sup.drainer.begin(site, action, "idle")

    def _decide(self, site: Site, in_flight: Mapping[str, int], now: float) -> Action:
        if self.supervisor.busy(site) or site.config.replica_of:  # a replica goes when the Scaler says
            return Action.KEEP
        cfg = site.config
        view = IdleView(
            strategy=cfg.strategy,
            running=site.state is SiteState.RUNNING,
            paused=site.state is SiteState.PAUSED,
            in_flight=site.open_requests(in_flight),
            last_activity=self.supervisor.activity.last_activity(site),
            pause_after=cfg.pause_after,
            idle_timeout=cfg.idle_timeout,
        )
        return idle_action(view, now)
