"""The guard of Caddy: a managed Caddy that dies is started again and given its config; an unmanaged one that
stops answering is reported, and given dialup's config again when it is back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp

from activator.interfaces import Clock
from activator.model import EventKind
from activator.periodic import Periodic
from activator.proxy.caddy import CaddyAdmin, CaddyError
from activator.proxy.process import CaddyProcess
from activator.supervisor.routes import Routes

log = logging.getLogger(__name__)

CADDY = "(caddy)"  # the `site` of Caddy's event rows
MANAGED_CHECK = 0.25  # seconds between looks at the managed Caddy's process (no request: a /proc read)
UNMANAGED_CHECK = 1.0  # seconds between requests to an unmanaged Caddy's admin API
START_LIMIT = 15.0  # seconds a restarted Caddy has to answer on its admin API
STOP_LIMIT = 10.0  # seconds a Caddy told to stop has to exit (it finishes its requests in that time)
RETRY_FIRST, RETRY_MOST = 1.0, 30.0  # seconds between tries to restart a Caddy that will not start: doubling

Record = Callable[[str, EventKind, str, float | None, str], Awaitable[None]]


class CaddyGuard:
    """Writer of what is known of Caddy, for status: up or not, its pid, its restarts, and whether the kernel
    migrates the connections its reloads would reset (`migrate`, set once at startup)."""

    def __init__(
        self, admin: CaddyAdmin, process: CaddyProcess | None, routes: Routes, record: Record, clock: Clock
    ) -> None:
        self.admin, self.process, self.routes, self._record, self._clock = admin, process, routes, record, clock
        self.up = False
        self.restarts = 0
        self.migrate = "not set"
        self.loop: Periodic | None = None
        self._retry_at = 0.0  # when a failed restart is tried again (monotonic)
        self._retry_wait = RETRY_FIRST

    @property
    def managed(self) -> bool:
        return self.process is not None

    async def ensure(self) -> None:
        """At startup: the Caddy that answers at the admin address (started now, if dialup manages it; started
        again, if it was started with a listen address, socket or open-file cap the config no longer has)."""
        if await self.admin.alive():
            self.up = True
            log.info("using the Caddy already answering at %s", self.admin.address)
            if self.process is None:
                return
            if not self.process.alive():
                log.warning("that Caddy is not the one in %s: it is not restarted if it dies", self.process.pidfile)
                self.process = None
                return
            changed = self.process.changed_settings()
            if not changed:
                return
            log.warning("restarting Caddy: it was started with other %s than the config's", ", ".join(changed))
            await self._stop(self.process)
        elif self.process is None:
            raise CaddyError(f"Caddy's admin API at {self.admin.address} does not answer, and caddy.manage = false")
        self.process.start()
        await self.admin.wait_alive(START_LIMIT)
        self.up = True

    async def _stop(self, process: CaddyProcess) -> None:
        identity = process.identity()
        try:
            await self.admin.request("POST", "/stop")
        except (aiohttp.ClientError, OSError):
            pass  # it may close the connection as it exits: whether it stopped is seen below
        await self._gone(process, identity)

    async def _gone(self, process: CaddyProcess, identity: tuple[int, str] | None) -> None:
        """Wait until that Caddy has exited and closed its files: until then its port is taken."""
        deadline = self._clock.monotonic() + STOP_LIMIT
        while identity is not None and not process.gone(identity):
            if self._clock.monotonic() > deadline:
                raise CaddyError(f"Caddy (pid {identity[0]}) has not exited after {STOP_LIMIT:.0f} s")
            await self._clock.sleep(0.01)

    def start(self) -> None:
        interval = MANAGED_CHECK if self.process is not None else UNMANAGED_CHECK
        self.loop = Periodic("caddy guard", interval, self.tick)
        self.loop.start()

    async def close(self) -> None:
        if self.loop is not None:
            await self.loop.close()

    async def tick(self) -> None:
        if self.process is not None:
            if not self.process.alive() and self._clock.monotonic() >= self._retry_at:
                try:
                    await self._restart(self.process)
                except (CaddyError, aiohttp.ClientError, OSError) as exc:
                    # One line per try, and tries further apart: a Caddy that cannot start (its port taken, its
                    # binary gone) is not fixed by trying four times a second.
                    log.error("Caddy could not be started again (%s): trying again in %.0f s", exc, self._retry_wait)
                    self._retry_at = self._clock.monotonic() + self._retry_wait
                    self._retry_wait = min(self._retry_wait * 2, RETRY_MOST)
                else:
                    self._retry_wait = RETRY_FIRST
            return
        alive = await self.admin.alive()
        if alive == self.up:
            return
        self.up = alive
        if not alive:
            log.error("Caddy's admin API at %s does not answer: sites are not being served", self.admin.address)
            await self._record(CADDY, EventKind.CADDY_DOWN, "unmanaged", None, self.admin.address)
            return
        await self.routes.verify()  # a Caddy that came back without our config gets it again
        log.info("Caddy's admin API at %s answers again", self.admin.address)
        await self._record(CADDY, EventKind.CADDY_UP, "unmanaged", None, self.admin.address)

    async def _restart(self, process: CaddyProcess) -> None:
        began = self._clock.monotonic()
        self.up = False
        log.error("the Caddy dialup manages (pid %s) is gone: starting it again", process.pid())
        await self._gone(process, process.identity())  # it may be dying still, its socket open
        pid = process.start()
        await self.admin.wait_alive(START_LIMIT)
        await self.routes.load()
        self.up = True
        self.restarts += 1
        elapsed = self._clock.monotonic() - began
        log.warning("caddy restarted (pid %d) and its config loaded in %.0f ms", pid, elapsed * 1000)
        await self._record(CADDY, EventKind.CADDY_RESTARTED, "died", elapsed * 1000, f"pid {pid}")
