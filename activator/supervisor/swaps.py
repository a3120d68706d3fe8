"""Swaps: a site's new release taking over from the old without a failed request (a deploy, a rollback).

A running site gets the new release's container started beside the old one, in a network holder of its own
(or with a port of its own), probed, and only then routed to; the old one drains and is removed, and the new
one takes the site's names. A stopped site just gets the new settings: its next start makes the container
anew. The memory budget counts both containers while they run side by side."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

from activator.config import SiteConfig
from activator.core.policy import Action
from activator.errors import SiteUnavailable, StartFailed, SwapFailed
from activator.interfaces import Clock, ContainerRuntime, Prober, Router
from activator.model import Container, Network, SiteState
from activator.readiness import wait_ready
from activator.runtime.labels import container_name, holder_name, staging_name
from activator.supervisor.containers import Containers
from activator.supervisor.drains import DRAIN_POLL, Drainer
from activator.supervisor.evictions import Evictor
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.routes import Routes
from activator.supervisor.site import Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

SETTLE_ROUNDS = 20  # looks at a site busy with a start or a drain before a swap gives up waiting


class Swapper:
    """The one way a site's settings change while dialup runs. The swap of a running site is its transition
    (Work): no drain, start or eviction of the site runs meanwhile, and requests keep going to the old
    container until the new one answers."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        router: Router,
        routes: Routes,
        lifecycle: Lifecycle,
        containers: Containers,
        holders: Holders,
        drainer: Drainer,
        evictor: Evictor,
        work: Work,
        prober: Prober,
        clock: Clock,
        deployment: str,
        holder_image: str,
    ) -> None:
        self._runtime, self._router, self._routes, self._lifecycle = runtime, router, routes, lifecycle
        self._containers, self._holders, self._drainer, self._evictor = containers, holders, drainer, evictor
        self._work, self._prober, self._clock = work, prober, clock
        self._deployment, self._holder_image = deployment, holder_image

    async def swap(self, site: Site, config: SiteConfig, cause: str) -> str:
        """Make `config` the site's; returns how ("swapped", or "at its next start"). Raises SwapFailed when
        the new container would not answer: the old one serves on, untouched."""
        for _ in range(SETTLE_ROUNDS):
            under_way = self._work.transition(site) or self._work.drain(site)
            if under_way is None:
                break
            with suppress(Exception):
                await asyncio.shield(under_way)
        else:
            raise SwapFailed(site.name, "it stayed busy starting or draining")
        if site.state is SiteState.PAUSED:
            drain = self._drainer.begin(site, Action.STOP, cause)
            if drain is not None:
                with suppress(Exception):
                    await asyncio.shield(drain)
        if site.state is SiteState.RUNNING and site.host_port is not None:
            # The transition never fails: requests that end up waiting on it (the old container died meanwhile)
            # go on to a start of their own; the swap's outcome is for the deploy alone.
            outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._work.begin_transition(site, self._settled(self._beside(site, config, cause), outcome))
            await asyncio.shield(outcome)
            return "swapped"
        if site.state is SiteState.STOPPED:
            await self._renew_stopped(site, config)
            return "at its next start"
        raise SwapFailed(site.name, f"it is {site.state}; try again")

    @staticmethod
    async def _settled(work: Coroutine[Any, Any, None], outcome: asyncio.Future[None]) -> None:
        try:
            await work
        except BaseException as exc:
            if not outcome.done():
                outcome.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            outcome.set_result(None)

    async def _renew_stopped(self, site: Site, config: SiteConfig) -> None:
        self._lifecycle.configured(site, config)
        await self._containers.stopped(site)
        found = await self._runtime.find(config)
        if found is not None:
            await self._containers.replace(site, found, "a new release")

    async def _beside(self, site: Site, config: SiteConfig, cause: str) -> None:
        holder: Container | None = None
        made: Container | None = None
        try:
            await self._evictor.make_room(site, extra=config.memory_limit)
            if config.network is Network.HOLDER:
                holder = await self._runtime.create_holder(
                    config, self._holder_image, staging_name(holder_name(self._deployment, config.name))
                )
                holder = await self._runtime.start(config, holder.id)
                port = holder.host_port
            staged = staging_name(container_name(self._deployment, config.name))
            made = await self._runtime.create(config, holder.id if holder else None, staged)
            started = await self._runtime.start(config, made.id)
            port = holder.host_port if holder else started.host_port
            if not started.running or port is None:
                raise StartFailed(site.name, f"its new container exited at once (code {started.exit_code})")
            never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                async with self._clock.timeout(config.start_timeout):
                    await wait_ready(self._prober, self._clock, config, port, never)
            except TimeoutError:
                last = await self._runtime.last_log_line(made.id)
                why = f"its new container did not answer in {config.start_timeout:g}s"
                raise StartFailed(site.name, why + (f" (last: {last})" if last else "")) from None
        except BaseException as exc:
            for thing in (made, holder):
                if thing is not None:
                    with suppress(Exception):
                        await self._runtime.remove(thing.id)
            if isinstance(exc, asyncio.CancelledError):
                raise
            reason = exc.reason if isinstance(exc, SiteUnavailable) else repr(exc)  # budget full, engine refused, ...
            raise SwapFailed(site.name, reason) from None
        old_id = site.container_id
        self._lifecycle.configured(site, config)
        if not self._lifecycle.swapped(site, made.id, holder.id if holder else None, port, cause):
            with suppress(Exception):
                await self._runtime.remove(made.id)
            raise SwapFailed(site.name, f"it became {site.state} during the swap")
        old_holder = self._holders.swapped(site, holder, 0) if holder is not None else None
        await self._retire(site, old_id, old_holder)
        await self._runtime.rename(made.id, container_name(self._deployment, config.name))
        if holder is not None:
            await self._runtime.rename(holder.id, holder_name(self._deployment, config.name))

    async def _retire(self, site: Site, container_id: str | None, holder: Container | None) -> None:
        """Once Caddy routes to the new container, the requests the old one was serving end, then it and its
        holder go. Caddy counts a site's open requests together (its upstream is the route file), so the sign
        is one moment with none open after the switch (every request begun before it has ended by then); a
        site never without one (a WebSocket) gets drain_timeout."""
        cfg = site.config
        await self._routes.settle(site.name, cfg.drain_timeout)
        deadline = self._clock.monotonic() + cfg.drain_timeout
        while self._clock.monotonic() < deadline:
            if site.open_requests(await self._router.in_flight()) == 0:
                break
            await self._clock.sleep(DRAIN_POLL)
        for old, grace in ((container_id, cfg.stop_grace), (holder.id if holder else None, 1.0)):
            if old is not None:
                with suppress(Exception):
                    await self._runtime.stop(old, grace)
                with suppress(Exception):
                    await self._runtime.remove(old)
