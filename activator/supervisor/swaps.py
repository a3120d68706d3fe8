"""Swaps: a site's new release or settings taking over from the old without a failed request (a deploy, a
rollback, a reload).

A running site gets the new container started beside the old one, in a network holder of its own (or with a
port of its own), probed, and only then switched to: the new container and holder take the site's names (the
old ones become `.old`), the record and Caddy's route move to them, and the old ones finish what they serve
and are removed in the background. A stopped site just gets the new settings: its next start makes the
container anew. The memory budget counts both containers while they run side by side (a reservation)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

from activator.config import SiteConfig
from activator.core.policy import Action
from activator.errors import SiteUnavailable, StartFailed, SwapFailed
from activator.interfaces import Clock, ContainerRuntime, Prober
from activator.model import Container, Network, SiteState
from activator.readiness import wait_ready
from activator.runtime.labels import container_name, holder_name, retired_name, staging_name
from activator.supervisor.containers import Containers
from activator.supervisor.drains import Drainer
from activator.supervisor.evictions import Evictor
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.routes import Routes
from activator.supervisor.site import Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

Change = Callable[[SiteConfig], SiteConfig]  # from the site's settings as they are when the swap begins


class Swapper:
    """The one way a site's settings change while dialup runs. One swap per site at a time (a deploy and a
    reload of the same site queue), each computing its settings from the site's as they are when it begins.
    The staging of a running site's new container is its transition (Work): no drain, start or eviction of
    the site runs meanwhile, and requests keep going to the old container until the new one answers.
    Writer of: the swaps under way and the old containers being retired."""

    def __init__(
        self,
        runtime: ContainerRuntime,
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
        self._runtime, self._routes, self._lifecycle = runtime, routes, lifecycle
        self._containers, self._holders, self._drainer, self._evictor = containers, holders, drainer, evictor
        self._work, self._prober, self._clock = work, prober, clock
        self._deployment, self._holder_image = deployment, holder_image
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}

    async def swap(self, site: Site, change: Change, cause: str) -> str:
        """Apply `change` to the site's settings; returns how ("swapped", "at its next start", "unchanged").
        Raises SwapFailed when the new container would not answer: the old one serves on, untouched."""
        async with self._locks.setdefault(site.name, asyncio.Lock()):
            if (retiring := self._retiring.get(site.name)) is not None:
                await asyncio.shield(retiring)  # the swap before's old container is gone first
            await self._work.settled(site)
            if site.state is SiteState.PAUSED:
                drain = self._drainer.begin(site, Action.STOP, cause)
                if drain is not None:
                    with suppress(Exception):
                        await asyncio.shield(drain)
                await self._work.settled(site)
            config = change(site.config)
            if config == site.config:
                return "unchanged"
            if not config.run_image:
                raise SwapFailed(site.name, "it has no release to run yet: deploy it")
            if site.state is SiteState.RUNNING and site.host_port is not None:
                await self._as_transition(site, self._beside(site, config, cause))
                return "swapped"
            if site.state is SiteState.STOPPED:
                await self._as_transition(site, self._renew_stopped(site, config))
                return "at its next start"
            raise SwapFailed(site.name, f"it is {site.state}; try again")

    async def retired(self, site: Site) -> None:
        """Until the old container of the site's last swap is gone (at once if there is none)."""
        if (retiring := self._retiring.get(site.name)) is not None:
            with suppress(Exception):
                await asyncio.shield(retiring)

    async def retune(self, site: Site, change: Change, cause: str) -> None:
        """Settings that keep the container (the caller knows): applied in turn with the swaps of the site."""
        async with self._locks.setdefault(site.name, asyncio.Lock()):
            self._lifecycle.configured(site, change(site.config), cause)

    async def _as_transition(self, site: Site, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as the site's transition. The transition itself never fails: requests that wait on it
        (the old container died meanwhile) go on to a start of their own; the outcome is the swap's alone."""
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def settled() -> None:
            try:
                await work
            except BaseException as exc:
                if not outcome.done():
                    outcome.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                outcome.set_result(None)

        self._work.begin_transition(site, settled())
        await asyncio.shield(outcome)

    async def _renew_stopped(self, site: Site, config: SiteConfig) -> None:
        self._lifecycle.configured(site, config, "stopped: at its next start")
        await self._containers.stopped(site)
        found = await self._runtime.find(config)
        if found is not None:
            await self._containers.replace(site, found, "new settings")

    # -- a running site -------------------------------------------------------------------------

    async def _beside(self, site: Site, config: SiteConfig, cause: str) -> None:
        holder, made = await self._stage(site, config)
        port = holder.host_port if holder is not None else made.host_port
        assert port is not None
        # The old holder by its name: one that died meanwhile is forgotten by Holders, and still has the name.
        old_holder = await self._runtime.find_holder(site.config) if site.config.network is Network.HOLDER else None
        old_id = site.container_id
        try:
            await self._take_names(config, made, holder, old_id, old_holder)
        except Exception as exc:
            await self._remove(made, holder)
            await self._give_names_back(config, old_id, old_holder)
            self._evictor.release(site)
            raise SwapFailed(site.name, f"could not rename its containers: {exc!r}") from None
        old_limit = site.config.memory_limit + (self._holders.memory_of(site) or 0)
        self._lifecycle.configured(site, config, cause)
        if not self._lifecycle.swapped(site, made.id, holder.id if holder else None, port, cause):
            await self._remove(made, holder)  # what it became (a recovery under way) deals with the old ones
            self._evictor.release(site)
            raise SwapFailed(site.name, f"it became {site.state} during the swap")
        if holder is not None:
            self._holders.swapped(site, holder, await self._holders.measure(holder))
        elif old_holder is not None:
            self._holders.forget(site)  # from a holder to a network of its own
        self._evictor.reserve(site, old_limit)  # the old container runs until it is retired
        self._retiring[site.name] = self._work.spawn(self._retire(site, old_id, old_holder))

    async def _stage(self, site: Site, config: SiteConfig) -> tuple[Container | None, Container]:
        """The new container (and holder), started under `.next` names and answering. Raises SwapFailed."""
        holder: Container | None = None
        made: Container | None = None
        try:
            await self._evictor.make_room(site, extra=config.memory_limit)  # reserved until the swap ends
            if config.network is Network.HOLDER:
                name = staging_name(holder_name(self._deployment, config.name))
                holder = await self._runtime.create_holder(config, self._holder_image, name)
                holder = await self._runtime.start(config, holder.id)
            name = staging_name(container_name(self._deployment, config.name))
            made = await self._runtime.create(config, holder.id if holder else None, name)
            started = await self._runtime.start(config, made.id)
            port = holder.host_port if holder else started.host_port
            if not started.running or port is None:
                raise StartFailed(site.name, f"its new container exited at once (code {started.exit_code})")
            made = started if holder is None else made
            never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            try:
                async with self._clock.timeout(config.start_timeout):
                    await wait_ready(self._prober, self._clock, config, port, never)
            except TimeoutError:
                last = await self._runtime.last_log_line(made.id)
                why = f"its new container did not answer in {config.start_timeout:g}s"
                raise StartFailed(site.name, why + (f" (last: {last})" if last else "")) from None
        except BaseException as exc:
            await self._remove(made, holder)
            self._evictor.release(site)
            if isinstance(exc, asyncio.CancelledError):
                raise
            reason = exc.reason if isinstance(exc, SiteUnavailable) else repr(exc)  # budget full, engine refused
            raise SwapFailed(site.name, reason) from None
        return holder, made

    async def _take_names(
        self,
        config: SiteConfig,
        made: Container,
        holder: Container | None,
        old_id: str | None,
        old_holder: Container | None,
    ) -> None:
        """The new container and holder take the site's names, the old ones `.old`: from now on the engine's
        name for the site's container is the one that serves (what recovery and adoption look up)."""
        site_name, holder_of = container_name(self._deployment, config.name), holder_name(self._deployment, config.name)
        if old_id is not None:
            await self._runtime.rename(old_id, retired_name(site_name))
        await self._runtime.rename(made.id, site_name)
        if old_holder is not None:
            await self._runtime.rename(old_holder.id, retired_name(holder_of))
        if holder is not None:
            await self._runtime.rename(holder.id, holder_of)

    async def _give_names_back(self, config: SiteConfig, old_id: str | None, old_holder: Container | None) -> None:
        """After a rename the engine refused: the old container and holder keep (or get back) the site's names."""
        for thing, name in ((old_id, container_name), (old_holder.id if old_holder else None, holder_name)):
            if thing is not None:
                with suppress(Exception):
                    await self._runtime.rename(thing, name(self._deployment, config.name))

    async def _retire(self, site: Site, container_id: str | None, holder: Container | None) -> None:
        """Once Caddy routes to the new container, the requests the old one was serving end, then it and its
        holder go. Caddy counts a site's open requests together (its upstream is the route file), so the sign
        is one moment with none open after the switch (every request begun before it has ended by then); a
        site never without one (a WebSocket) gets drain_timeout."""
        cfg = site.config
        try:
            await self._routes.settle(site.name, cfg.drain_timeout)
            await self._drainer.open_work_ended(site, self._clock.monotonic() + cfg.drain_timeout)
            for old, grace in ((container_id, cfg.stop_grace), (holder.id if holder else None, 1.0)):
                if old is not None:
                    with suppress(Exception):
                        await self._runtime.stop(old, grace)
                    with suppress(Exception):
                        await self._runtime.remove(old)
        finally:
            self._evictor.release(site)
            self._retiring.pop(site.name, None)

    async def _remove(self, *things: Container | None) -> None:
        for thing in things:
            if thing is not None:
                with suppress(Exception):
                    await self._runtime.remove(thing.id)
