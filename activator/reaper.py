"""The reaper: every tick, pause or stop the sites the idle policy gives up on, draining them first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from activator.core.policy import Action, IdleView, idle_action
from activator.model import SiteState
from activator.supervisor import Site, Supervisor

log = logging.getLogger(__name__)

DRAIN_POLL = 0.05  # seconds between looks at the in-flight counts while draining


class Reaper:
    def __init__(self, supervisor: Supervisor, interval: float) -> None:
        self.supervisor = supervisor
        self.interval = interval
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
            except Exception:  # one bad tick (Caddy restarting, say) must not end the reaping
                log.exception("reaper tick failed")

    async def tick(self) -> None:
        sup = self.supervisor
        now = sup.clock()
        # Ask Caddy for in-flight counts only when some site would be paused or stopped without them.
        idle = [s for s in sup.sites.values() if self._decide(s, {}, now) is not Action.KEEP]
        if not idle:
            return
        in_flight = await sup.router.in_flight()
        for site in idle:
            action = self._decide(site, in_flight, now)
            if action is not Action.KEEP:
                site.draining = asyncio.ensure_future(self._drain(site, action))

    def _decide(self, site: Site, in_flight: Mapping[str, int], now: float) -> Action:
        if site.transition is not None or site.draining is not None or site.waiting:
            return Action.KEEP
        cfg = site.config
        view = IdleView(
            strategy=cfg.strategy,
            running=site.state is SiteState.RUNNING,
            paused=site.state is SiteState.PAUSED,
            in_flight=self.open_requests(site, in_flight),
            last_activity=self.supervisor.last_activity(site),
            pause_after=cfg.pause_after,
            idle_timeout=cfg.idle_timeout,
        )
        return idle_action(view, now)

    @staticmethod
    def open_requests(site: Site, in_flight: Mapping[str, int]) -> int:
        through_caddy = in_flight.get(f"127.0.0.1:{site.host_port}", 0) if site.host_port else 0
        return through_caddy + site.active

    async def _drain(self, site: Site, action: Action) -> None:
        """Route to the activator, wait for open work to end, then pause or stop. Held requests win."""
        sup, cfg = self.supervisor, site.config
        was_paused = site.state is SiteState.PAUSED
        began = sup.clock()
        try:
            site.state = SiteState.DRAINING
            if not was_paused:
                await sup.route(site, None)
                deadline = began + cfg.drain_timeout
                while (open_now := self.open_requests(site, await sup.router.in_flight())) > 0:
                    if sup.clock() > deadline:
                        log.warning("site %s: %d requests still open after drain_timeout", cfg.name, open_now)
                        break
                    if site.waiting:
                        break
                    await asyncio.sleep(DRAIN_POLL)
                if site.waiting:  # a request arrived meanwhile: keep the site, do not stop it under its nose
                    site.state = SiteState.RUNNING
                    await sup.route(site, site.host_port)
                    return
            assert site.container_id is not None
            if was_paused:  # a frozen process cannot take its SIGTERM: thaw it, then stop it
                await sup.runtime.unpause(site.container_id)
            if action is Action.PAUSE:
                await sup.runtime.pause(site.container_id)
                site.state = SiteState.PAUSED
            else:
                await sup.runtime.stop(site.container_id, cfg.stop_grace)
                site.state, site.host_port = SiteState.STOPPED, None
            kind = "paused" if action is Action.PAUSE else "stopped"
            log.info("site %s: %s after %.0f s idle", cfg.name, kind, began - sup.last_activity(site))
            await sup.events.record(cfg.name, kind, "idle", (sup.clock() - began) * 1000)
        except Exception:
            log.exception("site %s: drain failed", cfg.name)
            # Whatever happened, leave a state that the request path can recover from.
            site.state, site.host_port = SiteState.STOPPED, None
            if site.container_id is not None:
                sup.watch(sup.runtime.stop(site.container_id, cfg.stop_grace))
        finally:
            site.draining = None
