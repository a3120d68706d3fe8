"""What every part of the supervisor shares: the sites, the adapters, routes and background work."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from typing import Any

import aiohttp

from activator.config import Config
from activator.core.hosts import HostTable
from activator.core.rates import Rates
from activator.errors import SiteUnavailable
from activator.holders import Holders
from activator.model import Container, SiteState
from activator.ports import Clock, ContainerRuntime, EventLog, Router
from activator.site import Site

log = logging.getLogger("activator.supervisor")


class SupervisorBase(ABC):
    """The supervisor is this base plus one part per idea (adoption, recovery, drains), each in its own module;
    `Supervisor` (supervisor.py) puts them together with the start path."""

    def __init__(
        self,
        config: Config,
        runtime: ContainerRuntime,
        router: Router,
        events: EventLog,
        http: aiohttp.ClientSession,
        clock: Clock,
        holders: Holders,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.holders = holders
        self.router = router
        self.events = events
        self.http = http
        self.clock = clock  # wall-clock seconds: Caddy's access log stamps requests in the same time
        self.rates = Rates()
        self.sites = {s.name: Site(s) for s in config.sites}
        self._hosts = HostTable((host, s.name) for s in config.sites for host in s.hosts)
        self._background: set[asyncio.Task[Any]] = set()

    # -- lookups ------------------------------------------------------------------------------

    def site_for_host(self, host: str) -> Site | None:
        site = self._hosts.site(host)
        return self.sites.get(site) if site else None

    def running(self) -> Mapping[str, int]:
        return {
            n: s.host_port for n, s in self.sites.items() if s.state is SiteState.RUNNING and s.host_port is not None
        }

    def on_request(self, host: str, ts: float) -> None:
        """One request for `host` started at `ts` (from Caddy's access log, or held here)."""
        site = self.site_for_host(host)
        if site is not None:
            self.rates.record(site.config.name, ts)

    def last_activity(self, site: Site) -> float:
        return max(self.rates.last_request(site.config.name) or 0.0, site.up_since or 0.0)

    def failing(self, site: Site, now: float) -> bool:
        return site.crashes.failing(now) and now < site.crashes.next_try(site.backoff)

    # -- routes -------------------------------------------------------------------------------

    async def route(self, site: Site, host_port: int | None) -> None:
        site.routed.clear()
        try:
            await self.router.route(site.config, host_port)
        finally:
            if host_port is not None and site.host_port == host_port and site.state is SiteState.RUNNING:
                site.routed.set()

    async def wait_routed(self, site: Site, limit: float) -> None:
        """Wait (at most `limit` seconds) until Caddy routes the site to its container."""
        with suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await site.routed.wait()

    async def _replace(self, site: Site, container: Container, why: str) -> None:
        """Remove a site's container that can never serve again where it is; the next start creates it anew."""
        site.container_id = site.joined = None  # first: its "die" and "destroy" now match nothing
        log.info("site %s: replacing its container %s: %s", site.config.name, container.id[:12], why)
        await self.runtime.remove(container.id)
        await self.events.record(site.config.name, "replaced", "network", detail=f"{container.id[:12]}: {why}")

    async def _stop_stranded(self, site: Site, container: Container) -> None:
        """Stop a container whose holder died under it (unreachable now); its next start joins the new holder."""
        log.warning("site %s: its holder was restarted; stopping container %s", site.config.name, container.id[:12])
        with suppress(Exception):
            if container.paused:
                await self.runtime.unpause(container.id)
            await self.runtime.stop(container.id, site.config.stop_grace)
        await self.events.record(site.config.name, "stopped", "holder", detail="cut off by its holder's restart")

    # -- the start path (supervisor.py) --------------------------------------------------------

    @abstractmethod
    def _begin(self, site: Site, cause: str) -> asyncio.Task[int]: ...

    @abstractmethod
    async def _start(self, site: Site, cause: str) -> int: ...

    @abstractmethod
    async def _exit_reason(self, site: Site, code: int | None) -> str: ...

    # -- background work ----------------------------------------------------------------------

    def watch(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, SiteUnavailable):
                log.error("background task failed: %r", exc)
