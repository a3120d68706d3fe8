"""Owns every site's state: adoption at startup, single-flight starts, readiness probes, route switches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from activator.config import Config, SiteConfig
from activator.core.probe import is_ready_status, probe_delays
from activator.errors import ContainerGone, QueueFull, SiteUnavailable, StartFailed, StartTimeout
from activator.metrics import START_SECONDS, STARTS, WAITING
from activator.model import ContainerEvent, SiteState, Strategy
from activator.ports import Clock, ContainerRuntime, EventLog, Router

log = logging.getLogger(__name__)

# A failed start's container is stopped with this grace: it never served, so nothing is lost by hurrying.
FAILED_START_GRACE = 1.0
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2)
# Held requests are released into a just-started app at most this many at a time, counted until each one's
# response headers arrive: hundreds at once overflow a small listen backlog (busybox httpd's is 9), and the
# overflow then waits on TCP SYN retries (1 s, 3 s, 7 s, ...). Long responses do not hold a slot.
FORWARD_CONCURRENCY = 16


@dataclass
class Site:
    """One site's live state. Only the supervisor changes it, always on the event loop."""

    config: SiteConfig
    state: SiteState = SiteState.STOPPED
    container_id: str | None = None
    host_port: int | None = None
    starting: asyncio.Task[int] | None = None
    exited: asyncio.Future[int | None] | None = None  # resolved by a "die" event during a start
    waiting: int = 0
    failure: str = ""  # why the last start failed, for status
    stopping: asyncio.Future[None] | None = None  # stopping the container of a start that timed out
    # Set once Caddy's route points at the running container. Caddy 2.6 closes every proxied WebSocket
    # when its config changes, so a WebSocket is connected only after the switch (see DESIGN: known traps).
    routed: asyncio.Event = field(default_factory=asyncio.Event)
    forwarding: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(FORWARD_CONCURRENCY))


class Supervisor:
    def __init__(
        self,
        config: Config,
        runtime: ContainerRuntime,
        router: Router,
        events: EventLog,
        http: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.router = router
        self.events = events
        self.http = http
        self.clock = clock
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

    # -- startup ------------------------------------------------------------------------------

    async def adopt(self) -> None:
        """Take over the containers found by label; create the missing ones. Starts nothing."""
        for site in self.sites.values():
            found = await self.runtime.find(site.config)
            if found is None:
                try:
                    found = await self.runtime.create(site.config)
                except SiteUnavailable as exc:
                    site.failure = exc.reason
                    log.error("site %s: %s", site.config.name, exc.reason)
                    await self.events.record(site.config.name, "create_failed", "startup", detail=exc.reason)
                    continue
                await self.events.record(site.config.name, "created", "startup", detail=found.id[:12])
            site.container_id = found.id
            if found.running and found.host_port is not None:
                site.state, site.host_port = SiteState.RUNNING, found.host_port
                site.routed.set()  # the full config loaded at startup routes it to the container
                log.info("site %s: adopted running container %s", site.config.name, found.id[:12])

    def start_persistent(self) -> None:
        for site in self.sites.values():
            if site.config.strategy is Strategy.PERSISTENT and site.state is SiteState.STOPPED:
                self._watch(self._begin_start(site, "persistent"))

    async def close(self) -> None:
        tasks: set[asyncio.Future[Any]] = set(self._background)
        for site in self.sites.values():
            tasks.update(t for t in (site.starting, site.stopping) if t is not None)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the request path ---------------------------------------------------------------------

    async def acquire(self, site: Site) -> int:
        """The host port of the site's running container, starting it once however many requests wait."""
        if site.state is SiteState.RUNNING and site.host_port is not None:
            return site.host_port
        if site.waiting >= site.config.max_waiting:
            raise QueueFull(site.config.name, site.config.max_waiting)
        site.waiting += 1
        gauge = WAITING.labels(site.config.name)
        gauge.inc()
        try:
            task = site.starting or self._begin_start(site, "request")
            # shield: one waiter giving up (client gone) must not cancel the start the others wait on.
            return await asyncio.shield(task)
        finally:
            site.waiting -= 1
            gauge.dec()

    async def suspect(self, site: Site, host_port: int) -> None:
        """A forward to host_port was refused: unless a newer start moved on, look again at the container."""
        if site.host_port != host_port or site.state is not SiteState.RUNNING:
            return
        found = await self.runtime.find(site.config)
        if found is None or not found.running or found.host_port != host_port:
            self._mark_stopped(site, "refused")

    # -- starting -----------------------------------------------------------------------------

    def _begin_start(self, site: Site, cause: str) -> asyncio.Task[int]:
        site.state = SiteState.STARTING
        site.routed.clear()
        site.starting = asyncio.get_running_loop().create_task(self._start(site, cause))
        return site.starting

    async def _start(self, site: Site, cause: str) -> int:
        cfg = site.config
        began = self.clock()
        site.exited = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(cfg.start_timeout):
                if site.stopping is not None:  # a failed start's stop: let it finish, or its "die" fails us
                    await asyncio.shield(site.stopping)
                port = await self._start_container(site)
                await self._probe(site, port)
        except Exception as exc:
            error = _as_unavailable(cfg, exc)
            site.state, site.host_port, site.failure = SiteState.STOPPED, None, error.reason
            STARTS.labels(cfg.name, "failed").inc()
            log.warning("site %s: start failed: %s", cfg.name, error.reason, exc_info=error is not exc)
            if isinstance(error, StartTimeout) and site.container_id:
                site.stopping = asyncio.ensure_future(self._stop_failed(site, site.container_id))
            await self.events.record(cfg.name, "start_failed", cause, (self.clock() - began) * 1000, error.reason)
            raise error from None
        finally:
            site.starting = None
            site.exited = None
        elapsed = self.clock() - began
        site.state, site.host_port, site.failure = SiteState.RUNNING, port, ""
        STARTS.labels(cfg.name, "ok").inc()
        START_SECONDS.labels(cfg.name).observe(elapsed)
        log.info("site %s: started in %.0f ms (%s)", cfg.name, elapsed * 1000, cause)
        # Held requests are released now; Caddy's route follows in the background.
        self._watch(self._route(site, port))
        self._watch(self.events.record(cfg.name, "start", cause, elapsed * 1000))
        return port

    async def _stop_failed(self, site: Site, container_id: str) -> None:
        try:
            await self.runtime.stop(container_id, FAILED_START_GRACE)
        except Exception as exc:  # the next start finds out for itself
            log.warning("site %s: stopping the failed start: %s", site.config.name, exc)
        finally:
            site.stopping = None

    async def _start_container(self, site: Site) -> int:
        cfg = site.config
        for _ in range(2):  # a second go only when the container vanished behind our back
            if site.container_id is None:
                site.container_id = (await self.runtime.create(cfg)).id
                await self.events.record(cfg.name, "created", "start", detail=site.container_id[:12])
            try:
                found = await self.runtime.start(cfg, site.container_id)
            except ContainerGone:
                site.container_id = None
                continue
            if not found.running or found.host_port is None:
                raise StartFailed(cfg.name, await self._exit_reason(site, found.exit_code))
            return found.host_port
        raise StartFailed(cfg.name, "its container keeps disappearing")

    async def _probe(self, site: Site, port: int) -> None:
        """GET health_path until the app answers, or fail at once when the container exits."""
        assert site.exited is not None
        url = f"http://127.0.0.1:{port}{site.config.health_path}"
        headers = {"Host": site.config.hosts[0], "User-Agent": "dialup-probe"}
        for delay in probe_delays():
            attempt = asyncio.ensure_future(self._probe_once(url, headers))
            racing: set[asyncio.Future[Any]] = {attempt, site.exited}
            done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if site.exited in done:
                attempt.cancel()
                raise StartFailed(site.config.name, await self._exit_reason(site, site.exited.result()))
            if attempt.result():
                return
            await asyncio.wait({site.exited}, timeout=delay)

    async def _probe_once(self, url: str, headers: dict[str, str]) -> bool:
        try:
            async with self.http.get(url, headers=headers, timeout=PROBE_TIMEOUT, allow_redirects=False) as r:
                return is_ready_status(r.status)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def _exit_reason(self, site: Site, code: int | None) -> str:
        last = await self.runtime.last_log_line(site.container_id) if site.container_id else ""
        reason = f"its container exited with code {code}" if code is not None else "its container exited"
        return f"{reason}: {last}" if last else reason

    # -- engine events ------------------------------------------------------------------------

    def on_container_event(self, event: ContainerEvent) -> None:
        site = self.sites.get(event.site)
        if site is None or (site.container_id and event.container_id != site.container_id):
            return
        if event.action == "die":
            if site.exited is not None and not site.exited.done():
                site.exited.set_result(event.exit_code)
            elif site.state is SiteState.RUNNING:
                self._mark_stopped(site, f"exited with code {event.exit_code}")
        elif event.action == "destroy":
            site.container_id = None
            if site.state is SiteState.RUNNING:
                self._mark_stopped(site, "removed")

    async def _route(self, site: Site, host_port: int | None) -> None:
        site.routed.clear()
        try:
            await self.router.route(site.config, host_port)
        finally:
            if host_port is not None and site.host_port == host_port:
                site.routed.set()

    async def wait_routed(self, site: Site, limit: float) -> None:
        """Wait (at most `limit` seconds) until Caddy routes the site to its container."""
        with suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await site.routed.wait()

    def _mark_stopped(self, site: Site, why: str) -> None:
        log.warning("site %s: container %s", site.config.name, why)
        site.state, site.host_port = SiteState.STOPPED, None
        self._watch(self._route(site, None))
        self._watch(self.events.record(site.config.name, "exited", "engine", detail=why))

    def _watch(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
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
