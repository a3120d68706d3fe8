"""Starts and wakes: admission, the container made and started, its readiness probe, and why it failed."""

from __future__ import annotations

import asyncio
import logging

from activator.errors import AppExited, ContainerGone, SiteUnavailable, StartFailed, StartTimeout
from activator.interfaces import Clock, ContainerRuntime, Prober
from activator.metrics import START_SECONDS, STARTS
from activator.model import EventKind, Network, SiteState
from activator.readiness import wait_ready
from activator.supervisor.containers import Containers
from activator.supervisor.evictions import Evictor
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Exit, Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

# A failed start's container is stopped with this grace: it never served, so nothing is lost by hurrying.
FAILED_START_GRACE = 1.0
# A start runs again (within its start_timeout) when its container was stopped from outside or its holder
# died while it started: at most this many runs in all.
RUNS = 3
DIE_WAIT = 1.0  # seconds to wait for the "die" event of a container that exited as it started


class Starter:
    """One start (or wake) per site at a time, however many requests wait: each is the site's transition
    (Work), which every waiter awaits. Failures are sorted: the app's (it exited, was killed for its
    memory, or did not answer in time) count as crashes; the engine's or Caddy's do not."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        lifecycle: Lifecycle,
        holders: Holders,
        containers: Containers,
        evictor: Evictor,
        work: Work,
        prober: Prober,
        clock: Clock,
    ) -> None:
        self._runtime, self._lifecycle, self._holders, self._containers = runtime, lifecycle, holders, containers
        self._evictor, self._work, self._prober, self._clock = evictor, work, prober, clock

    def begin(self, site: Site, cause: str) -> asyncio.Task[None] | None:
        """Start (or wake) the site, or join the start under way. None when it cannot start now."""
        if (running := self._work.transition(site)) is not None:
            return running
        wake = site.state is SiteState.PAUSED
        if not self._lifecycle.begin_start(site, cause):
            return None
        return self._work.begin_transition(site, self._wake(site, cause) if wake else self.start(site, cause))

    async def start(self, site: Site, cause: str) -> None:
        """A start, from STARTING to RUNNING (or STOPPED, raising the answer its waiters get). Run only as the
        site's transition: begin(), or a recovery that continues into a start."""
        cfg, began = site.config, self._clock.monotonic()
        probing = False
        if not cfg.run_image:
            reason = f"it has no release yet: deploy it (dialup deploy {cfg.name})"
            self._lifecycle.start_failed(site, reason, cause, 0.0, None)
            raise StartFailed(cfg.name, reason, "it has not been deployed yet")
        try:
            async with self._clock.timeout(cfg.start_timeout):
                await self._evictor.make_room(site)
                await self._containers.stopped(site)  # a failed start's stop: let it end, or its "die" fails us
                for _ in range(RUNS):
                    launched = await self._launch(site)
                    probing = True
                    end = launched if isinstance(launched, Exit) else await self._probe(site, launched)
                    probing = False
                    if end is None:
                        assert isinstance(launched, int)
                        port = launched
                        break
                    await self._ended(site, end)
                else:
                    raise StartFailed(cfg.name, "it was stopped from outside, or lost its holder, at every try")
        except asyncio.CancelledError:
            self._lifecycle.start_failed(site, "its start was cancelled", cause, self._since(began), None)
            raise
        except Exception as exc:
            error, crash = _sorted(site, exc, probing)
            STARTS.labels(cfg.name, "failed").inc()
            log.warning("site %s: start failed: %s", cfg.name, error.reason, exc_info=error is not exc)
            if isinstance(error, StartTimeout) and site.container_id:
                self._containers.stop(site, site.container_id, FAILED_START_GRACE)
            written = self._lifecycle.start_failed(site, error.reason, cause, self._since(began), crash)
            if written is not None:
                await written
            raise error from None
        finally:
            site.run.disarm()
        elapsed = self._since(began)
        STARTS.labels(cfg.name, "ok").inc()
        START_SECONDS.labels(cfg.name).observe(elapsed)
        self._lifecycle.up(site, port, cause, elapsed, woke=False)

    async def _ended(self, site: Site, end: Exit) -> None:
        """The run ended before it answered. Raise if that fails the start; return to run it again."""
        if end.cut_off:
            log.warning("site %s: its holder died while it started; starting it again", site.name)
            if site.container_id is not None:
                found = await self._runtime.find(site.config)
                if found is not None:
                    await self._containers.stop_stranded(site, found)
            return
        if end.killed and not end.oom:
            # A docker stop (or kill) from outside: not the app's doing. The held requests get the site.
            log.info("site %s: stopped from outside while it started (code %s); starting it again", site.name, end.code)
            self._lifecycle.record(site, EventKind.STOPPED, "external", detail=f"while starting, exit code {end.code}")
            return
        raise await self._containers.exited(site, end)

    async def _launch(self, site: Site) -> int | Exit:
        """Create the container if need be and start it: its host port, or how it ended at once."""
        cfg = site.config
        holder = await self._holders.ensure(site) if cfg.network is Network.HOLDER else None
        joins = holder.id if holder else None
        for _ in range(2):  # a second go only when the container vanished behind our back
            if site.container_id is not None and site.joined != joins:  # it joined a holder since replaced
                found = await self._runtime.find(cfg)
                if found is not None:
                    await self._containers.replace(site, found, "its holder was replaced")
                self._lifecycle.container(site, None)
            if site.container_id is None:
                await self._containers.create(site, joins, "start")
            assert site.container_id is not None
            ended = site.run.arm(new_run=True)
            try:
                found = await self._containers.start(site, site.container_id)
            except ContainerGone:
                self._lifecycle.container(site, None)
                continue
            port = holder.host_port if holder else found.host_port
            if found.running and port is not None:
                return port
            try:  # its "die" tells how (and whether someone stopped it), unless the event stream is down
                async with self._clock.timeout(DIE_WAIT):
                    return await ended
            except TimeoutError:
                return Exit(found.exit_code)
        raise StartFailed(cfg.name, "its container keeps disappearing")

    async def _probe(self, site: Site, port: int) -> Exit | None:
        return await wait_ready(self._prober, self._clock, site.config, port, site.run.watching())

    async def _wake(self, site: Site, cause: str) -> None:
        cfg, began = site.config, self._clock.monotonic()
        container_id, port = site.container_id, site.host_port
        try:
            assert container_id is not None and port is not None
            async with self._clock.timeout(cfg.start_timeout):
                site.run.arm(new_run=False)
                await self._runtime.unpause(container_id)
                end = await self._probe(site, port)
            if end is not None:
                raise StartFailed(cfg.name, "its container ended while it woke")
        except asyncio.CancelledError:
            self._lifecycle.start_failed(site, "its wake was cancelled", cause, self._since(began), None)
            raise
        except Exception as exc:
            # It will not wake: stop it and start it afresh, in the same transition, for the waiting requests.
            log.warning("site %s: wake failed (%r); starting it afresh", cfg.name, exc)
            site.run.disarm()
            if container_id is not None:
                self._containers.stop(site, container_id, FAILED_START_GRACE)
            await self.start(site, cause)  # which waits for that stop first
            return
        finally:
            site.run.disarm()
        self._lifecycle.up(site, port, cause, self._since(began), woke=True)

    def _since(self, began: float) -> float:
        return self._clock.monotonic() - began


def _sorted(site: Site, exc: Exception, probing: bool) -> tuple[SiteUnavailable, EventKind | None]:
    """The answer the waiting requests get, and whether it counts as a crash (CRASH, OOM) or not (None)."""
    if isinstance(exc, AppExited):
        return exc, EventKind.OOM if exc.oom else EventKind.CRASH
    if isinstance(exc, TimeoutError):
        # Only an app that was started and did not answer in time is to blame; a slow admission or engine is not.
        return StartTimeout(site.name, site.config.start_timeout), EventKind.CRASH if probing else None
    if isinstance(exc, SiteUnavailable):
        return exc, None
    why = f"unexpected error while starting: {exc or type(exc).__name__}"
    return StartFailed(site.name, why, "unexpected error while starting"), None
