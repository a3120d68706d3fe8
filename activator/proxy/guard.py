"""The guard of Caddy: a managed Caddy that dies is started again and given its config; an unmanaged one that
stops answering is reported, and given dialup's config again when it is back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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

    @property
    def managed(self) -> bool:
        return self.process is not None

    async def ensure(self) -> None:
        """At startup: the Caddy that answers at the admin address (started now, if dialup manages it)."""
        if await self.admin.alive():
            self.up = True
            log.info("using the Caddy already answering at %s", self.admin.address)
            if self.process is not None and not self.process.alive():
                log.warning("that Caddy is not the one in %s: it is not restarted if it dies", self.process.pidfile)
                self.process = None
        elif self.process is None:
            raise CaddyError(f"Caddy's admin API at {self.admin.address} does not answer, and caddy.manage = false")
        else:
            self.process.start()
            await self.admin.wait_alive(START_LIMIT)
            self.up = True

    def start(self) -> None:
        interval = MANAGED_CHECK if self.process is not None else UNMANAGED_CHECK
        self.loop = Periodic("caddy guard", interval, self.tick)
        self.loop.start()

    async def close(self) -> None:
        if self.loop is not None:
            await self.loop.close()

    async def tick(self) -> None:
        if self.process is not None:
            if not self.process.alive():
                await self._restart(self.process)
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
        pid = process.start()
        await self.admin.wait_alive(START_LIMIT)
        await self.routes.load()
        self.up = True
        self.restarts += 1
        elapsed = self._clock.monotonic() - began
        log.warning("caddy restarted (pid %d) and its config loaded in %.0f ms", pid, elapsed * 1000)
        await self._record(CADDY, EventKind.CADDY_RESTARTED, "died", elapsed * 1000, f"pid {pid}")
