"""The supervisor: the single owner of site state, put together from parts that each do one thing."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from activator.config import Config, SiteConfig
from activator.core.hosts import HostTable
from activator.core.policy import Action
from activator.core.reloads import keep_release
from activator.errors import QueueFull, SiteFailing, SiteUnavailable, StartTimeout
from activator.interfaces import Clock, ContainerRuntime, EventLog, Prober, Router
from activator.metrics import WAITING
from activator.model import ContainerEvent, EventKind, SiteState
from activator.supervisor.activity import Activity
from activator.supervisor.adoption import adopt, adopt_one
from activator.supervisor.containers import Containers
from activator.supervisor.drains import Drainer
from activator.supervisor.evictions import Evictor
from activator.supervisor.holder_recovery import HolderRecovery
from activator.supervisor.holders import Holders
from activator.supervisor.keeper import Keeper
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.limiter import RateLimiter
from activator.supervisor.recovery import Recovery
from activator.supervisor.routes import Routes
from activator.supervisor.scaler import Scaler
from activator.supervisor.site import Site
from activator.supervisor.starts import Starter
from activator.supervisor.swaps import Swapper
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")


def served(config: Config) -> list[tuple[str, str]]:
    """(host, site) for every host: a replica serves its site's hosts, and is found through its site."""
    return [(host, s.name) for s in config.container_sites if not s.replica_of for host in s.hosts]


# A request waits for at most this many starts of its site (a site that dies right after each start).
ACQUIRE_ROUNDS = 3


@dataclass
class Lease:
    """A request's hold on a running site (Supervisor.lease): where to send it, and what to say back."""

    port: int
    slots: asyncio.Semaphore  # held while the request waits for its response headers
    _site: Site
    _recovery: Recovery

    async def no_answer(self) -> None:
        """The forward got no answer (refused, or closed unanswered): look at the container again. Returns
        once the site's state reflects what was found, so that a retry starts it if it is gone."""
        await self._recovery.suspect(self._site, self.port)


class Supervisor:
    """Every site's state and the parts that change it, wired here once: Lifecycle (the one writer of the
    records, by the transition table), Routes (Caddy kept to what is wanted), Starter, Drainer, Evictor,
    Recovery, HolderRecovery, Keeper, and adoption. The edge sees one contract: `lease`."""

    def __init__(
        self,
        config: Config,
        runtime: ContainerRuntime,
        router: Router,
        events: EventLog,
        clock: Clock,
        prober: Prober,
        measure: Callable[[str], Awaitable[int | None]],
    ) -> None:
        self.config, self.clock, self.router = config, clock, router
        # Static sites served from their published files have no container: Caddy serves them, not us.
        self.sites = {s.name: Site(s) for s in config.container_sites}
        self._hosts = HostTable(served(config))
        self._runtime = runtime
        self.work = Work()
        primaries = {s.name: s.replica_of for s in config.container_sites if s.replica_of}
        self.routes = Routes(router, clock, self.sites, primaries)
        self.lifecycle = Lifecycle(events, clock, self.routes, self.work)
        self.activity = Activity(clock)
        self.holders = Holders(runtime, self.lifecycle, self.work, clock, config.holder.image, measure)
        self.containers = Containers(runtime, self.lifecycle, self.work)
        self.drainer = Drainer(
            runtime, router, self.routes, self.lifecycle, self.containers, self.holders, self.work, clock
        )
        self.evictor = Evictor(
            config, self.sites, router, self.holders, self.drainer, self.lifecycle, self.work,
            self.activity.last_activity,
        )  # fmt: skip
        self.starter = Starter(
            runtime, self.lifecycle, self.holders, self.containers, self.evictor, self.work, prober, clock
        )
        self.keeper = Keeper(self.starter, self.lifecycle, self.work, clock)
        self.holder_recovery = HolderRecovery(
            self.lifecycle, self.holders, self.containers, self.starter, self.keeper, self.work, clock
        )
        self.recovery = Recovery(
            self.sites, runtime, self.lifecycle, self.containers, self.holder_recovery, self.work, clock, prober
        )
        self.swapper = Swapper(
            runtime, self.routes, self.lifecycle, self.containers, self.holders, self.drainer,
            self.evictor, self.work, prober, clock, config.server.name, config.holder.image,
        )  # fmt: skip
        self.scaler = Scaler(
            self.sites, self.activity, self.starter, self.drainer, self.swapper, self.lifecycle, self.work, clock
        )
        self.limiter = RateLimiter(self.sites, self.activity, self.routes, self.lifecycle, clock)

    # -- what the rest of the activator asks ---------------------------------------------------

    def site_for_host(self, host: str) -> Site | None:
        site = self._hosts.site(host)
        return self.sites.get(site) if site else None

    def on_request(self, host: str, wall_ts: float) -> None:
        """One request for `host` that started at wall_ts (from Caddy's access log)."""
        site = self.site_for_host(host)
        if site is not None:
            self.activity.on_request(site.name, wall_ts)

    def site_name(self, host: str) -> str | None:
        site = self._hosts.site(host)
        return site if site in self.sites else None

    def on_requests(self, site: str, count: int) -> None:
        """`count` requests for the site since the last read of Caddy's metrics."""
        if site in self.sites:
            self.activity.on_requests(site, count)

    def on_container_event(self, event: ContainerEvent) -> None:
        self.recovery.on_container_event(event)

    def busy(self, site: Site) -> bool:
        return self.work.busy(site)

    # -- life of the supervisor ----------------------------------------------------------------

    async def adopt(self) -> None:
        await adopt(self.sites, self._runtime, self.lifecycle, self.holders, self.containers)

    def start_persistent(self) -> None:
        for site in self.sites.values():
            if site.config.strategy.kept_up and site.state in (SiteState.STOPPED, SiteState.PAUSED):
                self.keeper.keep_up(site, "persistent")

    async def close(self) -> None:
        self.keeper.close()
        self.limiter.release_all()
        await self.work.close()  # drains cancelled give their sites back, and say so to Routes ...
        await self.routes.close()  # ... which puts Caddy right one last time

    # -- a reload of the config file (activator/reload.py) ----------------------------------------

    def reconfigure(self, config: Config) -> None:
        """The config as reloaded: the hosts it names (a removed site's requests are 404s from now on; it is
        still here until remove_site) and the budget. Sites come and go with add_site and remove_site."""
        self.config = config
        self._hosts = HostTable(served(config))
        self.evictor.reconfigure(config)

    async def add_site(self, config: SiteConfig) -> None:
        """A site the config gained: its holder and container made (or adopted), started if persistent."""
        site = self.sites[config.name] = Site(config)
        self.routes.add(config.name, config.replica_of or None)
        await adopt_one(site, self._runtime, self.lifecycle, self.holders, self.containers)
        if config.strategy.kept_up:
            self.keeper.keep_up(site, "persistent")

    async def remove_site(self, name: str) -> None:
        """A site the config lost: drained (its open requests end, at most drain_timeout) and stopped, then its
        container and holder removed, and the site forgotten."""
        site = self.sites[name]
        self.keeper.forget(site)
        for _ in range(ACQUIRE_ROUNDS):
            await self.work.settled(site)
            if site.state in (SiteState.RUNNING, SiteState.PAUSED):
                drain = self.drainer.begin(site, Action.STOP, "config", "removed from the config")
                if drain is not None:
                    with suppress(Exception):
                        await asyncio.shield(drain)
            if site.state is SiteState.STOPPED and not self.work.busy(site):
                break
        # Forgotten first: the engine's events of the removals below then match no site (a holder's death
        # would otherwise be recovered, a new holder made).
        del self.sites[name]
        self.holders.forget(site)
        self.lifecycle.container(site, None)
        self.routes.forget(name)
        self.scaler.forget(name)
        self.limiter.forget(name)
        for found in (await self._runtime.find(site.config), await self._runtime.find_holder(site.config)):
            if found is not None:
                with suppress(Exception):
                    await self._runtime.remove(found.id)
        await self.lifecycle.record(name, EventKind.REMOVED, "config", detail="removed from the config")

    async def retune(self, config: SiteConfig) -> None:
        """New settings that keep the site's container (timeouts, strategy, hosts, limits of Caddy's side), with
        the release it runs; applied after any swap of the site under way."""
        site = self.sites[config.name]
        await self.swapper.retune(site, lambda now: keep_release(now, config), "reload")
        if config.strategy.kept_up and site.state is SiteState.STOPPED:
            self.keeper.keep_up(site, "persistent")

    # -- the request path ----------------------------------------------------------------------

    def admit(self, site: Site) -> None:
        """A request may go on, or raises RateLimited (the site is over its rate limit)."""
        self.limiter.admit(site)

    @asynccontextmanager
    async def lease(self, site: Site) -> AsyncIterator[Lease]:
        """Hold the request until the site runs (starting or waking it once, however many wait), then count
        it as open work (a drain waits for it) until the block ends. Raises SiteUnavailable with the answer."""
        serving = self._replica_alone(site)
        if serving is None:
            await self._acquire(site)
            serving = self._instance(site)
        assert serving.host_port is not None
        serving.demand.active += 1
        try:
            yield Lease(serving.host_port, serving.demand.forwarding, serving, self.recovery)
        finally:
            serving.demand.active -= 1

    def _replica_alone(self, site: Site) -> Site | None:
        """The second instance, while it serves and the site's first does not (it crashed: the keeper starts it
        again meanwhile)."""
        replica = self.scaler.replica(site)
        if site.state is not SiteState.RUNNING and replica is not None and replica.state is SiteState.RUNNING:
            return replica if replica.host_port is not None else None
        return None

    def _instance(self, site: Site) -> Site:
        """The running site, or its second instance when that serves and has fewer requests forwarded to it."""
        replica = self.scaler.replica(site)
        if (
            replica is not None
            and replica.state is SiteState.RUNNING
            and replica.host_port is not None
            and replica.demand.active < site.demand.active
        ):
            return replica
        return site

    async def _acquire(self, site: Site) -> int:
        if site.state is SiteState.RUNNING and site.host_port is not None:
            return site.host_port
        self._refuse_if_failing(site)
        if site.demand.waiting >= site.config.max_waiting:
            raise QueueFull(site.name, site.config.max_waiting)
        site.demand.waiting += 1
        gauge = WAITING.labels(site.name)
        gauge.inc()
        try:
            # However long what is under way takes (a drain's stop, a wake that falls back to a start, a holder's
            # recovery), a request waits at most its site's start_timeout.
            async with self.clock.timeout(site.config.start_timeout):
                return await self._until_running(site)
        except TimeoutError:
            raise StartTimeout(site.name, site.config.start_timeout) from None
        except SiteUnavailable:
            raise
        except Exception as exc:  # the contract: a request gets the site, or a SiteUnavailable to answer with
            log.exception("site %s: unexpected error while a request waited", site.name)
            why = f"unexpected error while starting: {exc!r}"
            raise SiteUnavailable(site.name, why, "unexpected error while starting") from None
        finally:
            site.demand.waiting -= 1
            gauge.dec()

    async def _until_running(self, site: Site) -> int:
        for _ in range(ACQUIRE_ROUNDS):
            if site.state is SiteState.RUNNING and site.host_port is not None:
                return site.host_port
            if (drain := self.work.drain(site)) is not None:  # the drain sees the request and keeps the site
                with suppress(Exception):
                    await asyncio.shield(drain)
                continue
            transition = self.work.transition(site) or self.starter.begin(site, "request")
            if transition is None:
                self._refuse_if_failing(site)
                raise SiteUnavailable(site.name, f"it cannot be started while {site.state}")
            # shield: one waiter giving up (client gone) must not cancel what the others wait on.
            await asyncio.shield(transition)
        if site.state is SiteState.RUNNING and site.host_port is not None:
            return site.host_port
        why = "it stopped again each time it started"
        raise SiteUnavailable(site.name, f"{why} (last: {site.failure})", why)

    def _refuse_if_failing(self, site: Site) -> None:
        if self.lifecycle.failing(site):
            retry = math.ceil(self.lifecycle.retry_in(site))
            crashed = f"failing, crashed {len(site.crashes.times)} times in 5 minutes"
            raise SiteFailing(
                site.name,
                f"{crashed} (last: {site.failure}); next try in {retry}s",
                retry,
                f"{crashed}; next try in {retry}s",  # the last failure may hold the app's log line
            )
