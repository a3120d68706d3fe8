"""Network holders: one tiny long-lived container per site that owns its network namespace and published port.

A site's container joins its holder's namespace (network_mode "container:<holder id>", like a Kubernetes pod's
sandbox), so starting it skips Docker's network setup: about a third of the plain start. The holder runs for as
long as the site is configured; stops, pauses and evictions of the site leave it alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from activator.errors import ContainerGone, StartFailed
from activator.interfaces import Clock, ContainerRuntime
from activator.model import Container, EventKind, Network
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.work import Work

log = logging.getLogger(__name__)
ATTEMPTS = 5  # to bring a holder up; the last two make a new one rather than restart the old


@dataclass
class _Slot:
    holder: Container | None = None  # the running holder, with its host port
    bringing_up: asyncio.Task[Container] | None = None
    memory: int = 0  # bytes it uses, counted in the budget


class Holders:
    """Each site's holder: the one writer of what is known of them (which one runs, what it uses)."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        lifecycle: Lifecycle,
        work: Work,
        clock: Clock,
        image: str,
        measure: Callable[[str], Awaitable[int | None]],
    ) -> None:
        self._runtime, self._lifecycle, self._work, self._clock = runtime, lifecycle, work, clock
        self._image = image
        self._measure = measure  # bytes in use by a container (its cgroup), None if it has none
        self._slots: dict[str, _Slot] = {}

    def _slot(self, site: Site) -> _Slot:
        return self._slots.setdefault(site.name, _Slot())

    def current(self, site: Site) -> Container | None:
        slot = self._slots.get(site.name)
        return slot.holder if slot else None

    def memory(self) -> int:
        """What the running holders use, all together: it comes off the top of the budget."""
        return sum(s.memory for s in self._slots.values() if s.holder is not None)

    def memory_of(self, site: Site) -> int | None:
        slot = self._slots.get(site.name)
        return slot.memory if slot and slot.holder is not None else None

    def measured(self, site: Site, used: int) -> None:
        """The monitor's latest reading of the holder's cgroup."""
        self._slot(site).memory = used

    async def ensure(self, site: Site) -> Container:
        """The site's running holder: adopted, restarted or created as need be, once however many ask."""
        assert site.config.network is Network.HOLDER
        slot = self._slot(site)
        if slot.holder is not None and slot.holder.running and slot.holder.publishes in (None, site.config.port):
            return slot.holder  # (one that publishes another port, the site's before a reload, is made anew below)
        if slot.bringing_up is None:
            slot.bringing_up = self._work.spawn(self._bring_up(site, slot))
        # shield: one asker giving up must not cancel what the others wait on.
        return await asyncio.shield(slot.bringing_up)

    async def _bring_up(self, site: Site, slot: _Slot) -> Container:
        try:
            for attempt in range(ATTEMPTS):
                # Restarting the same holder keeps its site's container valid; a holder that will not
                # restart (the engine may still be cleaning up after a kill) is removed and made anew.
                try:
                    found = await self._start_holder(site, anew=attempt >= ATTEMPTS - 2)
                except ContainerGone:
                    await self._clock.sleep(0.05 * 2**attempt)  # the engine finishes a kill or removal meanwhile
                    continue
                used = await self._measure(found.id)
                slot.holder, slot.memory = found, used or 0
                return found
            raise StartFailed(site.name, "its network holder would not come up")
        finally:
            slot.bringing_up = None

    async def _start_holder(self, site: Site, anew: bool) -> Container:
        """The holder, running; raises ContainerGone to be tried again in a moment."""
        cfg = site.config
        found = await self._runtime.find_holder(cfg)
        if found is not None and found.status in ("removing", "dead"):
            raise ContainerGone(found.id)
        stray = found is not None and not found.isolated and not (found.running or found.paused)
        if found is not None and (found.publishes != cfg.port or (anew and not found.running) or stray):
            # The site's port changed in the config, or it would not restart, or it is to be started and was made
            # on Docker's default bridge (before sites were isolated): a new one, on the deployment's network.
            log.info("site %s: replacing its holder %s", cfg.name, found.id[:12])
            await self._runtime.remove(found.id)
            found = None
        if found is None:
            found = await self._runtime.create_holder(cfg, self._image)
            self._lifecycle.record(site, EventKind.HOLDER_CREATED, "holder", detail=found.id[:12])
        if found.paused:
            await self._runtime.unpause(found.id)
        elif not found.running:
            try:
                found = await self._runtime.start(cfg, found.id)
            except StartFailed as exc:
                log.warning("site %s: its holder did not start (%s); trying again", cfg.name, exc.reason)
                raise ContainerGone(found.id) from None
            if not found.running or found.host_port is None:
                raise StartFailed(cfg.name, f"its network holder would not start (exit code {found.exit_code})")
        if found.host_port is None:  # adopted while paused: inspect again for its port
            found = await self._runtime.find_holder(cfg) or found
        return found

    async def measure(self, holder: Container) -> int:
        """What a holder uses now (its cgroup), for the budget."""
        return await self._measure(holder.id) or 0

    def swapped(self, site: Site, holder: Container, used: int) -> Container | None:
        """A deploy's holder (made beside the old one) is now the site's; returns the old one, to remove."""
        slot = self._slot(site)
        old, slot.holder, slot.memory = slot.holder, holder, used
        return old

    def forget(self, site: Site) -> Container | None:
        """The holder died: forget it at once (its later events then match nothing) and say which it was."""
        slot = self._slot(site)
        lost, slot.holder, slot.memory = slot.holder, None, 0
        return lost

    @staticmethod
    def joined(container: Container) -> str | None:
        """The holder a site's container joined, from its network mode; None if it has its own network."""
        mode = container.network_mode
        return mode.removeprefix("container:") if mode.startswith("container:") else None
