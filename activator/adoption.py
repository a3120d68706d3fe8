"""Adoption: a new activator takes over the containers it finds by label, restarting none."""

from __future__ import annotations

import asyncio

from activator.errors import SiteUnavailable
from activator.holders import Holders
from activator.model import Network, SiteState
from activator.site import Site
from activator.supervision import SupervisorBase, log

ADOPT_CONCURRENCY = 8


class Adoption(SupervisorBase):
    async def adopt(self) -> None:
        """Take over the containers found by label, restarting none; create missing ones; remove orphans."""
        for container in await self.runtime.list_deployment():
            site = self.sites.get(container.site)
            if site is None or (container.role == "holder" and site.config.network is not Network.HOLDER):
                why = "left the config" if site is None else "has network = plain"
                log.warning("removing %s %s: site %r %s", container.role, container.id[:12], container.site, why)
                await self.runtime.remove(container.id)
                await self.events.record(container.site, "removed", "config", detail=f"{container.role} {why}")
        # Several sites at a time: creating and starting holders takes the engine a tenth of a second each.
        slots = asyncio.Semaphore(ADOPT_CONCURRENCY)

        async def one(site: Site) -> None:
            async with slots:
                try:
                    await self._adopt(site)
                except SiteUnavailable as exc:
                    site.failure = exc.reason
                    log.error("site %s: %s", site.config.name, exc.reason)
                    await self.events.record(site.config.name, "create_failed", "startup", detail=exc.reason)

        await asyncio.gather(*(one(site) for site in self.sites.values()))

    async def _adopt(self, site: Site) -> None:
        cfg, holder, renewed = site.config, None, False
        if cfg.network is Network.HOLDER:
            before = await self.runtime.find_holder(cfg)
            holder = await self.holders.ensure(site)
            renewed = before is None or before.id != holder.id or not (before.running or before.paused)
        found = await self.runtime.find(cfg)
        if found is not None and Holders.joined(found) != (holder.id if holder else None):
            # It joined a holder that is gone, or the site's network setting changed: make it anew.
            await self._replace(site, found, "its network changed")
            found = None
        elif found is not None and renewed and (found.running or found.paused):
            # Its holder was restarted: it is cut off in the old namespace. Stopped, it joins the new one on start.
            await self._stop_stranded(site, found)
            found = await self.runtime.find(cfg)
        if found is None:
            found = await self.runtime.create(cfg, holder.id if holder else None)
            await self.events.record(cfg.name, "created", "startup", detail=found.id[:12])
        site.container_id, site.joined = found.id, Holders.joined(found)
        port = holder.host_port if holder else found.host_port
        if (found.running or found.paused) and port is not None:
            site.host_port, site.up_since = port, self.clock()  # a fresh idle window after a restart
            site.state = SiteState.RUNNING if found.running else SiteState.PAUSED
            if found.running:
                site.routed.set()  # the full config loaded at startup routes it to the container
            log.info("site %s: adopted %s container %s", cfg.name, found.status, found.id[:12])
