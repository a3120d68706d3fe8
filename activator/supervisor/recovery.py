"""Recovery: what the engine tells (deaths, OOM kills, stops from outside, dead holders), and forwards that
got no answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from activator.config import SiteConfig
from activator.interfaces import Clock, ContainerRuntime, Prober
from activator.model import ContainerEvent, EventKind, Network, SiteState, Strategy
from activator.supervisor.containers import Containers
from activator.supervisor.holder_recovery import HolderRecovery
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Exit, Site
from activator.supervisor.work import Work

log = logging.getLogger("activator.supervisor")

# After a forward failed, how long to look for a container that is dying (its init may outlive the app by a
# few milliseconds), and how often.
SUSPECT_WINDOW, SUSPECT_POLL = 1.0, 0.05


class Recovery:
    """Turns the engine's events, and forwards that got no answer, into state changes (through Lifecycle).
    Writer of: the looks in progress at containers that a forward got no answer from."""

    def __init__(
        self,
        sites: Mapping[str, Site],
        runtime: ContainerRuntime,
        lifecycle: Lifecycle,
        containers: Containers,
        holders: HolderRecovery,
        work: Work,
        clock: Clock,
        prober: Prober,
    ) -> None:
        self._sites, self._runtime, self._lifecycle, self._containers = sites, runtime, lifecycle, containers
        self._holders, self._work, self._clock, self._prober = holders, work, clock, prober
        self._looks: dict[str, asyncio.Task[None]] = {}

    # -- the engine's events -------------------------------------------------------------------

    def on_container_event(self, event: ContainerEvent) -> None:
        site = self._sites.get(event.site)
        if site is None:
            return
        if event.role == "holder":
            self._holders.on_event(site, event)
            return
        if site.container_id and event.container_id != site.container_id:
            return
        end = site.run.observe(event)
        if event.action == "destroy":
            self._lifecycle.container(site, None)
            if self._lifecycle.died(site, "its container was removed"):
                self._lifecycle.crashed(site, EventKind.CRASH, "engine", "its container was removed")
        elif end is not None:
            self._death(site, end)

    def _death(self, site: Site, end: Exit) -> None:
        """What a dead container means: a stop from outside, or a crash. The state changes at once (a request
        arriving meanwhile must not go to the dead container, and a "destroy" right behind finds it done)."""
        if end.killed and not end.oom and site.config.strategy is Strategy.LAZY:
            # Stopped from outside (docker stop): stopped, not crashed; the next request starts it.
            reason = f"its container was stopped from outside (exit code {end.code})"
            if self._lifecycle.died(site, reason):
                self._lifecycle.record(site, EventKind.STOPPED, "external", detail=f"exit code {end.code}")
        elif end.oom:
            if self._lifecycle.died(site, "its container was killed for using more memory than its limit"):
                self._work.spawn(self._oom_killed(site, end))
        elif self._lifecycle.died(site, reason := f"its container exited with code {end.code}"):
            self._lifecycle.crashed(site, EventKind.CRASH, "engine", reason)

    async def _oom_killed(self, site: Site, end: Exit) -> None:
        reason = (await self._containers.exited(site, end)).reason  # with its last log line
        self._lifecycle.crashed(site, EventKind.OOM, "engine", reason)

    # -- forwards that got no answer -----------------------------------------------------------

    async def suspect(self, site: Site, host_port: int) -> None:
        """A forward to host_port failed before any answer. Unless a newer start moved on, find out why: a
        container that died (or is dying), or a holder that is gone, makes the site stopped, so a retry starts it.
        One look per site however many forwards failed; it ends as soon as the site's state changes. It never
        raises: a look the engine fails is logged, and the caller's retry finds out for itself."""
        if site.host_port != host_port or site.state is not SiteState.RUNNING:
            return
        look = self._looks.get(site.name)
        if look is None:
            look = self._looks[site.name] = self._work.spawn(self._look_again(site, host_port))
        await asyncio.shield(look)

    async def _look_again(self, site: Site, host_port: int) -> None:
        cfg = site.config
        # A container signalled from outside (docker stop) may take up to its grace period to shut down, its
        # app refusing connections meanwhile: wait that long for it, rather than answer 503 now.
        window = max(SUSPECT_WINDOW, cfg.stop_grace + 1) if site.run.killed else SUSPECT_WINDOW
        deadline = self._clock.monotonic() + window
        try:
            while site.host_port == host_port and site.state is SiteState.RUNNING:
                # Each verdict is awaited, not left to the background: it turns the site stopped before its
                # first await, so the callers' retries find it so and start it.
                if (why := await self._gone(cfg, host_port)) == "container":
                    found = await self._runtime.find(cfg)
                    code = found.exit_code if found else None
                    self._death(site, Exit(code, killed=site.run.killed, oom=site.run.oom))
                    return
                if why == "holder":
                    await self._holders.lost(site)
                    return
                if why == "port" and self._lifecycle.died(site, "its container stopped answering"):
                    self._lifecycle.crashed(site, EventKind.CRASH, "engine", "its container stopped answering")
                    return
                if await self._answers(cfg, host_port, deadline):
                    return  # it answers again (an app that started itself again, a dev server after a change)
                if self._clock.monotonic() > deadline:
                    return  # it runs and does not answer: the app's own doing, not a stale route
                await self._clock.sleep(SUSPECT_POLL)
        except Exception as exc:  # the engine not answering: the caller's retry finds out for itself
            log.warning("site %s: could not look at its container again: %r", site.name, exc)
        finally:
            self._looks.pop(site.name, None)

    async def _answers(self, cfg: SiteConfig, host_port: int, deadline: float) -> bool:
        """One probe, bounded by the look's own deadline (a slow app does not stretch the look)."""
        try:
            async with self._clock.timeout(max(SUSPECT_POLL, deadline - self._clock.monotonic())):
                return await self._prober.probe(cfg, host_port)
        except TimeoutError:
            return False

    async def _gone(self, cfg: SiteConfig, host_port: int) -> str:
        """What is gone from under host_port: "container", "holder", "port" (it moved), or "" (nothing)."""
        found = await self._runtime.find(cfg)
        if found is None or not found.running:
            return "container"
        if cfg.network is Network.HOLDER:
            holder = await self._runtime.find_holder(cfg)
            if holder is None or not holder.running or holder.host_port != host_port:
                return "holder"
        elif found.host_port != host_port:
            return "port"
        return ""
