"""The supervisor: every site's state, and the start path (single-flight starts and wakes, admission, probes)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from activator.adoption import Adoption
from activator.config import SiteConfig
from activator.core.budget import Resident, admit
from activator.core.policy import Action
from activator.drains import Drains
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
from activator.metrics import START_SECONDS, STARTS, WAITING
from activator.model import Container, Network, SiteState, Strategy
from activator.readiness import wait_ready
from activator.recovery import Recovery
from activator.site import Site
from activator.supervision import log

# A failed start's container is stopped with this grace: it never served, so nothing is lost by hurrying.
FAILED_START_GRACE = 1.0


class _HolderLost(Exception):
    """The site's holder died while its container was starting in it."""


class Supervisor(Adoption, Recovery, Drains):
    def start_persistent(self) -> None:
        for site in self.sites.values():
            if site.config.strategy is Strategy.PERSISTENT and site.state in (SiteState.STOPPED, SiteState.PAUSED):
                self.watch(self._begin(site, "persistent"))

    async def close(self) -> None:
        tasks: set[asyncio.Future[Any]] = set(self._background)
        for site in self.sites.values():
            parts = (site.transition, site.draining, site.stopping, site.holder_task, site.looking)
            tasks.update(t for t in parts if t is not None)
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
        site.run_started = False  # until the engine reports this start, a "die" is an earlier run's, reported late
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
        oom = site.oom  # read first: the next run's "start" event clears it while the log is read
        last = await self.runtime.last_log_line(site.container_id) if site.container_id else ""
        if oom:
            reason = "its container was killed for using more memory than its limit"
        elif code is not None:
            reason = f"its container exited with code {code}"
        else:
            reason = "its container exited"
        return f"{reason}: {last}" if last else reason


def _as_unavailable(site: SiteConfig, exc: Exception) -> SiteUnavailable:
    """Every way a start can fail, as the one-line answer its waiting requests get."""
    if isinstance(exc, SiteUnavailable):
        return exc
    if isinstance(exc, TimeoutError):
        return StartTimeout(site.name, site.start_timeout)
    return StartFailed(site.name, f"unexpected error while starting: {exc or type(exc).__name__}")
