"""What several parts of the supervisor do to a site's container: create, replace, stop, explain its end."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from activator.errors import AppExited, ContainerExists
from activator.interfaces import ContainerRuntime
from activator.model import Container, EventKind
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Exit, Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")


class Containers:
    """Engine operations on a site's container shared by starts, drains, recovery and adoption. Creates and
    stops are tasks of their own: whoever stops waiting for one (a start that timed out, a drain cancelled)
    does not cancel it, its result is recorded, and the next start waits for a stop still under way.
    Writer of: the engine's start calls under way (a stop waits for the site's, else the container could come
    up after the stop)."""

    def __init__(self, runtime: ContainerRuntime, lifecycle: Lifecycle, work: Work) -> None:
        self._runtime, self._lifecycle, self._work = runtime, lifecycle, work
        self._starting: dict[str, asyncio.Task[Container]] = {}

    async def start(self, site: Site, container_id: str) -> Container:
        """The engine's start of the container, run to its end even if whoever awaits it is cancelled."""
        call = self._starting[site.name] = self._work.spawn(self._runtime.start(site.config, container_id))
        try:
            return await asyncio.shield(call)
        finally:
            if call.done() and self._starting.get(site.name) is call:
                del self._starting[site.name]

    async def create(self, site: Site, joins: str | None, cause: str) -> str:
        """Create the site's container (in holder `joins`'s namespace, or with its own network)."""
        return await asyncio.shield(self._work.spawn(self._create(site, joins, cause)))

    async def _create(self, site: Site, joins: str | None, cause: str) -> str:
        try:
            made = await self._runtime.create(site.config, joins)
        except ContainerExists:
            # Made by an earlier create whose answer was lost (the process died, say): take it if it fits.
            found = await self._runtime.find(site.config)
            if found is None:
                raise
            if Holders.joined(found) == joins:
                log.info("site %s: found its container %s already made", site.name, found.id[:12])
                self._lifecycle.container(site, found.id, joins)
                return found.id
            await self.replace(site, found, "it joined another network holder")
            made = await self._runtime.create(site.config, joins)
        self._lifecycle.container(site, made.id, joins)
        self._lifecycle.record(site, EventKind.CREATED, cause, detail=made.id[:12])
        return made.id

    async def replace(self, site: Site, container: Container, why: str) -> None:
        """Remove a container that can never serve again where it is; the next start creates it anew."""
        self._lifecycle.container(site, None)  # first: its "die" and "destroy" now match nothing
        log.info("site %s: replacing its container %s: %s", site.name, container.id[:12], why)
        await self._runtime.remove(container.id)
        await self._lifecycle.record(site, EventKind.REPLACED, "network", detail=f"{container.id[:12]}: {why}")

    def stop(self, site: Site, container_id: str, grace: float, *, paused: bool = False) -> asyncio.Task[None]:
        """Stop the container (thawing it first if paused: a frozen process cannot take its SIGTERM), as the
        site's stop: one at a time, and the next start of the site waits for it."""
        running = self._work.stop(site)
        if running is not None:
            return running
        return self._work.begin_stop(site, self._stop(site, container_id, grace, paused))

    async def _stop(self, site: Site, container_id: str, grace: float, paused: bool) -> None:
        if (starting := self._starting.pop(site.name, None)) is not None:
            with suppress(Exception):
                await starting  # a start that timed out: its engine call may still bring the container up
        if paused:
            await self._runtime.unpause(container_id)
        await self._runtime.stop(container_id, grace)

    async def stopped(self, site: Site) -> None:
        """Wait for a stop of the site's container still under way (a failed start's, a drain's); its errors
        are the next start's to find out."""
        running = self._work.stop(site)
        if running is not None:
            with suppress(Exception):
                await asyncio.shield(running)

    async def stop_stranded(self, site: Site, container: Container) -> None:
        """Stop a container whose holder died under it (unreachable now); its next start joins the new holder."""
        log.warning("site %s: its holder was restarted; stopping container %s", site.name, container.id[:12])
        with suppress(Exception):
            await asyncio.shield(self.stop(site, container.id, site.config.stop_grace, paused=container.paused))
        await self._lifecycle.record(site, EventKind.STOPPED, "holder", detail="cut off by its holder's restart")

    async def exited(self, site: Site, end: Exit) -> AppExited:
        """How the container ended, with its last log line (in the reason, never in the public phrase)."""
        last = await self._runtime.last_log_line(site.container_id) if site.container_id else ""
        if end.oom:
            reason = "its container was killed for using more memory than its limit"
        elif end.code is not None:
            reason = f"its container exited with code {end.code}"
        else:
            reason = "its container exited"
        return AppExited(site.name, reason, end.oom, last)
