"""Network holders: one tiny long-lived container per site that owns its network namespace and published port.

A site's container joins its holder's namespace (network_mode "container:<holder id>", like a Kubernetes pod's
sandbox), so starting it skips Docker's network setup: about a third of the plain start. The holder runs for as
long as the site is configured; stops, pauses and evictions of the site leave it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from activator.errors import ContainerGone, StartFailed
from activator.model import Container, Network
from activator.ports import ContainerRuntime, EventLog
from activator.site import Site

log = logging.getLogger(__name__)
ATTEMPTS = 5  # to bring a holder up; the last two make a new one rather than restart the old


class Holders:
    def __init__(
        self, runtime: ContainerRuntime, events: EventLog, image: str, measure: Callable[[str], int | None]
    ) -> None:
        self.runtime = runtime
        self.events = events
        self.image = image
        self.measure = measure  # bytes in use by a container (its cgroup), None if it has none

    async def ensure(self, site: Site) -> Container:
        """The site's running holder: adopted, restarted or created as need be, once however many ask."""
        assert site.config.network is Network.HOLDER
        if site.holder is not None and site.holder.running:
            return site.holder
        if site.holder_task is None:
            site.holder_task = asyncio.ensure_future(self._bring_up(site))
        # shield: one asker giving up must not cancel what the others wait on.
        return await asyncio.shield(site.holder_task)

    async def _bring_up(self, site: Site) -> Container:
        try:
            for attempt in range(ATTEMPTS):
                # Restarting the same holder keeps its site's container valid; a holder that will not
                # restart (the engine may still be cleaning up after a kill) is removed and made anew.
                try:
                    found = await self._start_holder(site, anew=attempt >= ATTEMPTS - 2)
                except ContainerGone:
                    await asyncio.sleep(0.05 * 2**attempt)  # the engine finishes a kill or a removal meanwhile
                    continue
                site.holder = found
                used: int | None = await asyncio.to_thread(self.measure, found.id)
                site.holder_memory = used or 0
                return found
            raise StartFailed(site.config.name, "its network holder would not come up")
        finally:
            site.holder_task = None

    async def _start_holder(self, site: Site, anew: bool) -> Container:
        """The holder, running; raises ContainerGone to be tried again in a moment."""
        cfg = site.config
        found = await self.runtime.find_holder(cfg)
        if found is not None and found.status in ("removing", "dead"):
            raise ContainerGone(found.id)
        if found is not None and (found.publishes != cfg.port or (anew and not found.running)):
            # The site's port changed in the config, or it would not restart: a new one.
            log.info("site %s: replacing its holder %s", cfg.name, found.id[:12])
            await self.runtime.remove(found.id)
            found = None
        if found is None:
            found = await self.runtime.create_holder(cfg, self.image)
            await self.events.record(cfg.name, "holder_created", "holder", detail=found.id[:12])
        if found.paused:
            await self.runtime.unpause(found.id)
        elif not found.running:
            try:
                found = await self.runtime.start(cfg, found.id)
            except StartFailed as exc:
                log.warning("site %s: its holder did not start (%s); trying again", cfg.name, exc.reason)
                raise ContainerGone(found.id) from None
            if not found.running or found.host_port is None:
                raise StartFailed(cfg.name, f"its network holder would not start (exit code {found.exit_code})")
        if found.host_port is None:  # adopted while paused: inspect again for its port
            found = await self.runtime.find_holder(cfg) or found
        return found

    def forget(self, site: Site) -> Container | None:
        """The holder died: forget it at once (its later events then match nothing) and say which it was."""
        lost, site.holder = site.holder, None
        site.holder_memory = 0
        return lost

    @staticmethod
    def joined(container: Container) -> str | None:
        """The holder a site's container joined, from its network mode; None if it has its own network."""
        mode = container.network_mode
        return mode.removeprefix("container:") if mode.startswith("container:") else None
