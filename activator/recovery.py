"""Recovery: crashes, OOM kills, stops from outside, dead holders, and forwards that got no answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress

from activator.errors import SiteUnavailable
from activator.model import Container, ContainerEvent, Network, SiteState, Strategy
from activator.site import Site
from activator.supervision import SupervisorBase, log

# After a forward failed, how long to look for a container that is dying (its init may outlive the app by a
# few milliseconds), and how often.
SUSPECT_WINDOW, SUSPECT_POLL = 1.0, 0.05


class Recovery(SupervisorBase):
    async def suspect(self, site: Site, host_port: int) -> None:
        """A forward to host_port failed before any answer. Unless a newer start moved on, find out why: a
        container that died (or is dying), or a holder that is gone, makes the site stopped, so a retry starts it.
        One look per site however many forwards failed; it ends as soon as the site's state changes."""
        if site.host_port != host_port or site.state is not SiteState.RUNNING:
            return
        if site.looking is None:
            site.looking = asyncio.ensure_future(self._look_again(site, host_port))
        await asyncio.shield(site.looking)

    async def _look_again(self, site: Site, host_port: int) -> None:
        # A container signalled from outside (docker stop) may take up to its grace period to shut down, its
        # app refusing connections meanwhile: wait that long for it, rather than answer 503 now.
        window = max(SUSPECT_WINDOW, site.config.stop_grace + 1) if site.killed else SUSPECT_WINDOW
        deadline = self.clock() + window
        try:
            while site.host_port == host_port and site.state is SiteState.RUNNING:
                found = await self.runtime.find(site.config)
                # Awaited, not left to the background: each turns the site stopped before its first await, so
                # the callers' retries find it so and start it.
                if found is None or not found.running:
                    await self._death(site, found.exit_code if found else None)
                    return
                if site.config.network is Network.HOLDER:
                    holder = await self.runtime.find_holder(site.config)
                    if holder is None or not holder.running or holder.host_port != host_port:
                        await self._holder_lost(site)
                        return
                elif found.host_port != host_port:
                    await self._crashed(site, "its container stopped answering")
                    return
                if self.clock() > deadline:
                    return  # it runs and does not answer: the app's own doing, not a stale route
                await asyncio.sleep(SUSPECT_POLL)
        finally:
            site.looking = None

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
                self.watch(self._death(site, event.exit_code, killed))
            else:
                site.oom = False  # our own stop (draining, failed start): not a crash
        elif event.action == "destroy":
            site.container_id = None
            if site.state in (SiteState.RUNNING, SiteState.PAUSED):
                self.watch(self._crashed(site, "its container was removed"))

    def _death(self, site: Site, code: int | None, killed: bool | None = None) -> Awaitable[None]:
        """What a dead container means: a stop from outside, or a crash."""
        killed = site.killed if killed is None else killed
        if killed and site.config.strategy is Strategy.LAZY and not site.oom:
            # Stopped from outside (docker stop): stopped, not crashed; the next request starts it.
            return self._stopped_externally(site, code)
        return self._crashed(site, f"exited with code {code}")

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
        reason = await self._exit_reason(site, None) if kind == "oom" else f"its container {why}"
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
