"""Owns every site's state: adoption, single-flight starts and wakes, probes, route switches, crashes."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from typing import Any

import aiohttp

from activator.config import Config, SiteConfig
from activator.core.budget import Resident, admit
from activator.core.policy import Action
from activator.core.rates import Rates
from activator.errors import (
    BudgetFull,
    ContainerGone,
    ImageMissing,
    QueueFull,
    SiteFailing,
    SiteUnavailable,
    StartFailed,
    StartTimeout,
)
from activator.holders import Holders
from activator.metrics import START_SECONDS, STARTS, WAITING
from activator.model import Container, ContainerEvent, Network, SiteState, Strategy
from activator.ports import Clock, ContainerRuntime, EventLog, Router
from activator.readiness import wait_ready
from activator.site import Site

log = logging.getLogger(__name__)

# A failed start's container is stopped with this grace: it never served, so nothing is lost by hurrying.
FAILED_START_GRACE = 1.0
DRAIN_POLL = 0.05  # seconds between looks at the in-flight counts while draining
# After a forward failed, how long to look for a container that is dying (its init may outlive the app by a
# few milliseconds), and how often.
SUSPECT_WINDOW, SUSPECT_POLL = 1.0, 0.02


class _HolderLost(Exception):
    """The site's holder died while its container was starting in it."""


class Supervisor:
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
        self._by_host = {host: s.name for s in config.sites for host in s.hosts}
        self._background: set[asyncio.Task[Any]] = set()

    # -- lookups ------------------------------------------------------------------------------

    def site_for_host(self, host: str) -> Site | None:
        name, _, port = host.rpartition(":")
        if not (name and port.isdigit()):
            name = host
        site = self._by_host.get(name.lower())
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

    # -- startup ------------------------------------------------------------------------------

    async def adopt(self) -> None:
        """Take over the containers found by label, restarting none; create missing ones; remove orphans."""
        for container in await self.runtime.list_deployment():
            site = self.sites.get(container.site)
            if site is None or (container.role == "holder" and site.config.network is not Network.HOLDER):
                why = "left the config" if site is None else "has network = plain"
                log.warning("removing %s %s: site %r %s", container.role, container.id[:12], container.site, why)
                await self.runtime.remove(container.id)
                await self.events.record(container.site, "removed", "config", detail=f"{container.role} {why}")
        for site in self.sites.values():
            try:
                await self._adopt(site)
            except SiteUnavailable as exc:
                site.failure = exc.reason
                log.error("site %s: %s", site.config.name, exc.reason)
                await self.events.record(site.config.name, "create_failed", "startup", detail=exc.reason)

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

    async def _replace(self, site: Site, container: Container, why: str) -> None:
        """Remove a site's container that can never serve again where it is; the next start creates it anew."""
        site.container_id = site.joined = None  # first: its "die" and "destroy" now match nothing
        log.info("site %s: replacing its container %s: %s", site.config.name, container.id[:12], why)
        await self.runtime.remove(container.id)
        await self.events.record(site.config.name, "replaced", "holder", detail=f"{container.id[:12]}: {why}")

    async def _stop_stranded(self, site: Site, container: Container) -> None:
        """Stop a container whose holder died under it (unreachable now); its next start joins the new holder."""
        log.warning("site %s: its holder was restarted; stopping container %s", site.config.name, container.id[:12])
        with suppress(Exception):
            if container.paused:
                await self.runtime.unpause(container.id)
            await self.runtime.stop(container.id, site.config.stop_grace)
        await self.events.record(site.config.name, "stopped", "holder", detail="cut off by its holder's restart")

    def start_persistent(self) -> None:
        for site in self.sites.values():
            if site.config.strategy is Strategy.PERSISTENT and site.state in (SiteState.STOPPED, SiteState.PAUSED):
                self.watch(self._begin(site, "persistent"))

    async def close(self) -> None:
        tasks: set[asyncio.Future[Any]] = set(self._background)
        for site in self.sites.values():
            tasks.update(t for t in (site.transition, site.draining, site.stopping, site.holder_task) if t is not None)
            if site.restart is not None:
                site.restart.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the request path ---------------------------------------------------------------------

    async def acquire(self, site: Site) -> int:
        """The host port of the site's running container, starting or waking it once however many wait."""
        if site.state is SiteState.RUNNING and site.host_port is not None:
            return site.host_port
        now = self.clock()
        if self.failing(site, now):
            retry = math.ceil(site.crashes.next_try(site.backoff) - now)
            raise SiteFailing(
                site.config.name,
                f"failing, crashed {len(site.crashes.times)} times in 5 minutes "
                f"(last: {site.failure}); next try in {retry}s",
                retry,
            )
        if site.waiting >= site.config.max_waiting:
            raise QueueFull(site.config.name, site.config.max_waiting)
        site.waiting += 1
        gauge = WAITING.labels(site.config.name)
        gauge.inc()
        try:
            while True:
                if site.state is SiteState.RUNNING and site.host_port is not None:
                    return site.host_port
                if site.draining is not None:  # the reaper sees the waiting request and gives the site back
                    with suppress(Exception):
                        await asyncio.shield(site.draining)
                    continue
                # shield: one waiter giving up (client gone) must not cancel what the others wait on.
                return await asyncio.shield(site.transition or self._begin(site, "request"))
        finally:
            site.waiting -= 1
            gauge.dec()

    async def suspect(self, site: Site, host_port: int) -> None:
        """A forward to host_port failed before any answer. Unless a newer start moved on, find out why: a
        container that died (or is dying), or a holder that is gone, makes the site stopped, so a retry starts it.
        Returns at once once the site's state changed, from here or from the engine's events."""
        deadline = self.clock() + SUSPECT_WINDOW
        while site.host_port == host_port and site.state is SiteState.RUNNING:
            found = await self.runtime.find(site.config)
            if found is None or not found.running:
                self._died(site, found.exit_code if found else None)
                return
            if site.config.network is Network.HOLDER:
                holder = await self.runtime.find_holder(site.config)
                if holder is None or not holder.running or holder.host_port != host_port:
                    self.watch(self._holder_lost(site))
                    return
            elif found.host_port != host_port:
                await self._crashed(site, "its container stopped answering")
                return
            if self.clock() > deadline:
                return  # it runs and does not answer: the app's own doing, not a stale route
            await asyncio.sleep(SUSPECT_POLL)

    # -- starting and waking ------------------------------------------------------------------

    def _begin(self, site: Site, cause: str) -> asyncio.Task[int]:
        wake = site.state is SiteState.PAUSED
        site.state = SiteState.STARTING
        site.routed.clear()
        site.transition = asyncio.ensure_future(self._wake(site, cause) if wake else self._start(site, cause))
        return site.transition

    async def _wake(self, site: Site, cause: str) -> int:
        cfg = site.config
        began = self.clock()
        try:
            assert site.container_id is not None and site.host_port is not None
            async with asyncio.timeout(cfg.start_timeout):
                await self.runtime.unpause(site.container_id)
                site.exited = asyncio.get_running_loop().create_future()
                await self._probe(site, site.host_port)
        except Exception as exc:
            # It will not wake: stop it and start it afresh for the waiting requests.
            log.warning("site %s: wake failed (%s); restarting it", cfg.name, exc)
            site.state, site.host_port = SiteState.STOPPED, None
            if site.container_id is not None:
                with suppress(Exception):
                    await self.runtime.stop(site.container_id, FAILED_START_GRACE)
            site.exited = None
            return await self._start(site, cause)
        finally:
            if site.transition is asyncio.current_task():
                site.transition = None
        site.exited = None
        elapsed = self.clock() - began
        self._up(site, site.host_port, f"woke in {elapsed * 1000:.0f} ms ({cause})")
        self.watch(self.events.record(cfg.name, "wake", cause, elapsed * 1000))
        return site.host_port

    async def _start(self, site: Site, cause: str) -> int:
        cfg = site.config
        began = self.clock()
        site.state = SiteState.STARTING
        site.exited = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(cfg.start_timeout):
                await self._admit(site)
                if site.stopping is not None:  # a failed start's stop: let it finish, or its "die" fails us
                    await asyncio.shield(site.stopping)
                port = await self._start_container(site)
                await self._probe(site, port)
        except _HolderLost:
            # The holder died under the start: it is being brought back; start again, once, inside the new one.
            if cause.endswith("(again)"):
                raise StartFailed(cfg.name, "its network holder died twice while it started") from None
            log.warning("site %s: its holder died while it started; starting it again", cfg.name)
            if site.container_id is not None:
                await self._stop_stranded(site, Container(site.container_id, "running"))
            return await self._start(site, f"{cause} (again)")
        except Exception as exc:
            error = _as_unavailable(cfg, exc)
            site.state, site.host_port, site.failure = SiteState.STOPPED, None, error.reason
            STARTS.labels(cfg.name, "failed").inc()
            log.warning("site %s: start failed: %s", cfg.name, error.reason, exc_info=error is not exc)
            if isinstance(error, StartTimeout) and site.container_id:
                site.stopping = asyncio.ensure_future(self._stop_failed(site, site.container_id))
            elapsed_ms = (self.clock() - began) * 1000
            await self.events.record(cfg.name, "start_failed", cause, elapsed_ms, error.reason)
            if isinstance(error, StartFailed | StartTimeout) and not isinstance(error, ImageMissing):
                self._count_crash(site, "oom" if site.oom else "crash", "start", error.reason)
            site.oom = False
            raise error from None
        finally:
            site.exited = None
            if site.transition is asyncio.current_task():
                site.transition = None
        elapsed = self.clock() - began
        STARTS.labels(cfg.name, "ok").inc()
        START_SECONDS.labels(cfg.name).observe(elapsed)
        self._up(site, port, f"started in {elapsed * 1000:.0f} ms ({cause})")
        self.watch(self.events.record(cfg.name, "start", cause, elapsed * 1000))
        return port

    async def _admit(self, site: Site) -> None:
        """Make room within the memory budget before a start: evict idle sites (drained first), or refuse."""
        # Holders always run: what they use comes off the top.
        budget = self.config.budget.memory - self.holders_memory()
        need = site.config.memory_limit
        for _ in range(3):  # a victim that got a request while draining is kept: plan again
            residents = [s for s in self.sites.values() if s is not site and s.holds_memory]
            used = sum(s.config.memory_limit for s in residents)
            if used + need <= budget:
                return
            in_flight = await self.router.in_flight()
            plan = admit(need, budget, (self.resident(s, in_flight) for s in residents))
            if plan is None:
                await self.events.record(site.config.name, "refused", "budget", detail=f"{used} of {budget} bytes")
                raise BudgetFull(site.config.name, need, used, budget)
            detail = f"made room for {site.config.name}"
            drains = [self.begin_drain(self.sites[name], Action.STOP, "budget", detail) for name in plan.evict]
            await asyncio.gather(*drains)
        raise BudgetFull(site.config.name, need, used, budget)

    def holders_memory(self) -> int:
        return sum(s.holder_memory for s in self.sites.values() if s.holder is not None)

    def resident(self, site: Site, in_flight: Mapping[str, int]) -> Resident:
        return Resident(
            name=site.config.name,
            memory=site.config.memory_limit,
            paused=site.state is SiteState.PAUSED,
            last_activity=self.last_activity(site),
            in_flight=site.open_requests(in_flight),
            persistent=site.config.strategy is Strategy.PERSISTENT,
            busy=site.busy or site.state not in (SiteState.RUNNING, SiteState.PAUSED),
        )

    def _up(self, site: Site, port: int, what: str) -> None:
        site.state, site.host_port, site.up_since = SiteState.RUNNING, port, self.clock()
        log.info("site %s: %s", site.config.name, what)
        # Held requests are released now; Caddy's route follows in the background.
        self.watch(self.route(site, port))

    async def _stop_failed(self, site: Site, container_id: str) -> None:
        try:
            await self.runtime.stop(container_id, FAILED_START_GRACE)
        except Exception as exc:  # the next start finds out for itself
            log.warning("site %s: stopping the failed start: %s", site.config.name, exc)
        finally:
            site.stopping = None

    async def _start_container(self, site: Site) -> int:
        cfg = site.config
        holder = await self.holders.ensure(site) if cfg.network is Network.HOLDER else None
        joins = holder.id if holder else None
        for _ in range(2):  # a second go only when the container vanished behind our back
            if site.container_id is not None and site.joined != joins:  # it joined a holder since replaced
                found = await self.runtime.find(cfg)
                if found is not None:
                    await self._replace(site, found, "its holder was replaced")
                site.container_id = None
            if site.container_id is None:
                site.container_id, site.joined = (await self.runtime.create(cfg, joins)).id, joins
                await self.events.record(cfg.name, "created", "start", detail=site.container_id[:12])
            site.run_started = False  # until the engine reports this start, a "die" is an earlier run's
            try:
                found = await self.runtime.start(cfg, site.container_id)
            except ContainerGone:
                site.container_id = None
                continue
            port = holder.host_port if holder else found.host_port
            if not found.running or port is None:
                raise StartFailed(cfg.name, await self._exit_reason(site, found.exit_code))
            return port
        raise StartFailed(cfg.name, "its container keeps disappearing")

    async def _probe(self, site: Site, port: int) -> None:
        assert site.exited is not None
        holder = site.holder
        exited = await wait_ready(self.http, site.config, port, site.exited)
        if exited is not None:
            if site.config.network is Network.HOLDER and site.holder is not holder:
                raise _HolderLost()
            raise StartFailed(site.config.name, await self._exit_reason(site, exited.code))

    async def _exit_reason(self, site: Site, code: int | None) -> str:
        last = await self.runtime.last_log_line(site.container_id) if site.container_id else ""
        if site.oom:
            reason = "its container was killed for using more memory than its limit"
        elif code is not None:
            reason = f"its container exited with code {code}"
        else:
            reason = "its container exited"
        return f"{reason}: {last}" if last else reason

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

    # -- crashes ------------------------------------------------------------------------------

    def on_container_event(self, event: ContainerEvent) -> None:
        site = self.sites.get(event.site)
        if site is None:
            return
        if event.role == "holder":
            holder = site.holder
            if holder is not None and event.container_id == holder.id and event.action in ("die", "destroy"):
                self.watch(self._holder_lost(site))
            return
        if site.container_id and event.container_id != site.container_id:
            return
        if event.action == "start":
            site.run_started, site.killed, site.oom = True, False, False
        elif event.action == "oom":
            site.oom = True
        elif event.action == "kill":
            site.killed = True
        elif event.action == "die":
            killed, site.killed = site.killed, False
            if site.exited is not None and not site.exited.done():
                if site.run_started:  # else the death of the run before, reported late: not this start's
                    site.exited.set_result(event.exit_code)
            elif site.state in (SiteState.RUNNING, SiteState.PAUSED):
                self._died(site, event.exit_code, killed)
            else:
                site.oom = False  # our own stop (draining, failed start): not a crash
        elif event.action == "destroy":
            site.container_id = None
            if site.state in (SiteState.RUNNING, SiteState.PAUSED):
                self.watch(self._crashed(site, "its container was removed"))

    def _died(self, site: Site, code: int | None, killed: bool | None = None) -> None:
        killed = site.killed if killed is None else killed
        if killed and site.config.strategy is Strategy.LAZY and not site.oom:
            # Stopped from outside (docker stop): stopped, not crashed; the next request starts it.
            self.watch(self._stopped_externally(site, code))
        else:
            self.watch(self._crashed(site, f"exited with code {code}"))

    async def _holder_lost(self, site: Site) -> None:
        """The holder died: its port and namespace are gone, and the site's container is cut off in them."""
        cfg = site.config
        lost = self.holders.forget(site)
        if lost is None:
            return  # already seen (an event and a failed forward both tell of it)
        log.warning("site %s: its network holder %s died", cfg.name, lost.id[:12])
        self.watch(self.events.record(cfg.name, "holder_died", "engine", detail=lost.id[:12]))
        if site.exited is not None and not site.exited.done():
            site.exited.set_result(None)  # a start or wake probing through it: fail it now; it starts again
        for task in (site.transition, site.draining):
            if task is not None:
                with suppress(Exception):
                    await asyncio.shield(task)
        if site.transition is not None or site.holder is not None:
            return  # a start since brought the holder back and started the container inside it
        if site.state in (SiteState.RUNNING, SiteState.PAUSED):
            # Requests wait for the recovery like for a start: it is the site's transition.
            paused = site.state is SiteState.PAUSED
            site.state = SiteState.STARTING
            site.routed.clear()
            site.transition = asyncio.ensure_future(self._recover(site, paused))
            self.watch(site.transition)
            return
        try:
            holder = await self.holders.ensure(site)
        except SiteUnavailable as exc:
            site.failure = exc.reason
            await self.events.record(cfg.name, "holder_failed", "engine", detail=exc.reason)
            return
        await self.events.record(cfg.name, "holder_restarted", "engine", detail=holder.id[:12])
        if cfg.strategy is Strategy.PERSISTENT and site.state is SiteState.STOPPED and site.transition is None:
            self.watch(self._begin(site, "holder"))

    async def _recover(self, site: Site, paused: bool) -> int:
        """Stop the cut-off container and bring the holder back; then start the site inside it if requests
        wait or it is persistent. Returns the port (0 when nothing waits).

        Caddy's route changes once, at the end (to the new port, or to the activator). Meanwhile the old port
        is closed, so Caddy's dials fail and fall through to the activator, which holds the requests. A
        route switch now would reload Caddy while those requests wait out Caddy's retry interval, and
        Caddy 2.6 abandons a retry when its config is replaced (a 502)."""
        cfg = site.config
        site.host_port = None
        try:
            assert site.container_id is not None
            stranded = Container(site.container_id, "paused" if paused else "running")
            holder, _ = await asyncio.gather(self.holders.ensure(site), self._stop_stranded(site, stranded))
            await self.events.record(cfg.name, "holder_restarted", "engine", detail=holder.id[:12])
            if site.waiting or cfg.strategy is Strategy.PERSISTENT:
                return await self._start(site, "holder")
            site.state = SiteState.STOPPED
            await self.route(site, None)
            return 0  # nobody waits on this transition (requests arriving now start the site anew)
        except BaseException:
            site.state, site.host_port = SiteState.STOPPED, None
            with suppress(Exception):
                await self.route(site, None)
            raise
        finally:
            if site.transition is asyncio.current_task():
                site.transition = None

    async def _crashed(self, site: Site, why: str) -> None:
        if site.state not in (SiteState.RUNNING, SiteState.PAUSED):
            return
        # Stopped before the first await: a request arriving meanwhile must not be sent to the dead container.
        site.state, site.host_port = SiteState.STOPPED, None
        kind = "oom" if site.oom else "crash"
        reason = await self._exit_reason(site, None) if site.oom else f"its container {why}"
        site.oom = False
        site.failure = reason
        log.warning("site %s: %s", site.config.name, reason)
        self._count_crash(site, kind, "engine", reason)
        await self.route(site, None)

    async def _stopped_externally(self, site: Site, code: int | None) -> None:
        if site.state not in (SiteState.RUNNING, SiteState.PAUSED):
            return
        site.state, site.host_port = SiteState.STOPPED, None
        log.info("site %s: its container was stopped from outside (exit code %s)", site.config.name, code)
        self.watch(self.events.record(site.config.name, "stopped", "external", detail=f"exit code {code}"))
        await self.route(site, None)

    def _count_crash(self, site: Site, kind: str, cause: str, reason: str) -> None:
        """One crash (or OOM kill): an event, the backoff's next step, and for persistent sites a restart."""
        self.watch(self.events.record(site.config.name, kind, cause, detail=reason))
        now = self.clock()
        site.crashes = site.crashes.crashed(now, site.up_since)
        if site.config.strategy is Strategy.PERSISTENT:
            delay = max(0.0, site.crashes.next_try(site.backoff) - now)
            if site.restart is not None:
                site.restart.cancel()
            log.info("site %s: restarting in %.1f s", site.config.name, delay)
            site.restart = asyncio.get_running_loop().call_later(delay, self._restart, site)

    def _restart(self, site: Site) -> None:
        site.restart = None
        if site.state is SiteState.STOPPED and site.transition is None and site.draining is None:
            self.watch(self._begin(site, "restart"))

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


def _as_unavailable(site: SiteConfig, exc: Exception) -> SiteUnavailable:
    """Every way a start can fail, as the one-line answer its waiting requests get."""
    if isinstance(exc, SiteUnavailable):
        return exc
    if isinstance(exc, TimeoutError):
        return StartTimeout(site.name, site.start_timeout)
    return StartFailed(site.name, f"unexpected error while starting: {exc or type(exc).__name__}")
