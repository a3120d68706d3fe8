"""Drains: route a site to the activator, wait for its open work, then pause or stop it."""

from __future__ import annotations

import asyncio

from activator.core.policy import Action
from activator.model import SiteState
from activator.site import Site
from activator.supervision import SupervisorBase, log

DRAIN_POLL = 0.05  # seconds between looks at the in-flight counts while draining


class Drains(SupervisorBase):
    # -- draining, pausing, stopping ----------------------------------------------------------

    def begin_drain(self, site: Site, action: Action, cause: str, detail: str = "") -> asyncio.Task[bool]:
        site.draining = asyncio.ensure_future(self._drain(site, action, cause, detail))
        return site.draining

    async def _drain(self, site: Site, action: Action, cause: str, detail: str) -> bool:
        """Route to the activator, wait for open work to end, then pause or stop. Held requests win:
        if one arrives before the pause or stop, the site is kept (and False returned)."""
        cfg = site.config
        was_paused = site.state is SiteState.PAUSED
        began = self.clock()
        try:
            site.state = SiteState.DRAINING
            if not was_paused:
                await self.route(site, None)
                deadline = began + cfg.drain_timeout
                while (open_now := site.open_requests(await self.router.in_flight())) > 0 and not site.waiting:
                    if self.clock() > deadline:
                        log.warning("site %s: %d requests still open after drain_timeout", cfg.name, open_now)
                        break
                    await asyncio.sleep(DRAIN_POLL)
                if site.waiting:  # a request arrived meanwhile: keep the site, do not stop it under its nose
                    site.state = SiteState.RUNNING
                    await self.route(site, site.host_port)
                    return False
            assert site.container_id is not None
            if was_paused:  # a frozen process cannot take its SIGTERM: thaw it, then stop it
                await self.runtime.unpause(site.container_id)
            if action is Action.PAUSE:
                await self.runtime.pause(site.container_id)
                site.state = SiteState.PAUSED
            else:
                await self.runtime.stop(site.container_id, cfg.stop_grace)
                site.state, site.host_port = SiteState.STOPPED, None
            kind = {Action.PAUSE: "paused", Action.STOP: "stopped"}[action]
            if cause != "idle":
                kind = "evicted"
            log.info("site %s: %s (%s%s)", cfg.name, kind, cause, f": {detail}" if detail else "")
            await self.events.record(cfg.name, kind, cause, (self.clock() - began) * 1000, detail)
            return True
        except Exception:
            log.exception("site %s: drain failed", cfg.name)
            # Whatever happened, leave a state that the request path can recover from.
            site.state, site.host_port = SiteState.STOPPED, None
            if site.container_id is not None:
                self.watch(self.runtime.stop(site.container_id, cfg.stop_grace))
            return True
        finally:
            site.draining = None
