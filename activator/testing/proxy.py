"""Fakes of what surrounds the engine: the proxy (Caddy), the readiness probe, and the event log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from activator.config import SiteConfig
from activator.model import EventKind
from activator.testing.clock import FakeClock
from activator.testing.runtime import FakeContainer, FakeRuntime


class ProxyError(Exception):
    """What the fake proxy raises where Caddy's admin API would fail."""


class FakeRouter:
    """Router in memory: `caddy` is the route the proxy has for each site; `open` the requests open to each
    host port (counted, as Caddy does, for the site whose route last pointed at it). `fail(op, times)` makes
    the next calls of an operation (load, route, routes, in_flight) fail; `down` makes every call fail."""

    def __init__(self) -> None:
        self.caddy: dict[str, int | None] = {}
        self.open: dict[int, int] = {}
        self._site_of: dict[int, str] = {}
        self.changes: list[tuple[str, int | None]] = []
        self.loads = 0
        self.down = False
        self._failures: dict[str, int] = {}

    def fail(self, op: str, times: int = 1) -> None:
        self._failures[op] = self._failures.get(op, 0) + times

    def _check(self, op: str) -> None:
        if self.down:
            raise ProxyError("the proxy does not answer")
        if self._failures.get(op):
            self._failures[op] -= 1
            raise ProxyError(f"{op} failed")

    async def load(self, routes: Mapping[str, int | None]) -> None:
        self._check("load")
        self.caddy, self.loads = dict(routes), self.loads + 1
        self._site_of.update({port: site for site, port in routes.items() if port is not None})

    async def route(self, site: str, host_port: int | None) -> None:
        self._check("route")
        if site not in self.caddy:
            raise ProxyError(f"unknown route {site}")
        self.caddy[site] = host_port
        self.changes.append((site, host_port))
        if host_port is not None:
            self._site_of[host_port] = site

    async def routes(self) -> Mapping[str, int | None]:
        self._check("routes")
        return dict(self.caddy)

    async def in_flight(self) -> Mapping[str, int]:
        self._check("in_flight")
        counts: dict[str, int] = {}
        for port, n in self.open.items():
            if n and port in self._site_of:
                counts[self._site_of[port]] = counts.get(self._site_of[port], 0) + n
        return counts


class FakeProber:
    """An app answers once its container runs, its namespace is up, and its App's ready_after has passed."""

    def __init__(self, runtime: FakeRuntime, clock: FakeClock) -> None:
        self.runtime, self.clock = runtime, clock

    async def probe(self, site: SiteConfig, port: int) -> bool:
        """Whichever running container of the site is reached at `port` (a deploy's runs beside the old)."""
        return any(self._answers(c, port) for c in list(self.runtime.containers.values()) if c.site == site.name)

    def _answers(self, c: FakeContainer, port: int) -> bool:
        if c.role != "site" or c.status != "running":
            return False
        if c.network_mode:
            holder = self.runtime.containers.get(c.network_mode.removeprefix("container:"))
            # Cut off: the holder died (or was restarted) since the container joined it.
            if holder is None or holder.status != "running" or holder.start_seq > c.start_seq:
                return False
            reached = holder.host_port
        else:
            reached = c.host_port
        app = self.runtime.app_of(c)
        return reached == port and app.answers and self.clock.monotonic() >= c.started_at + app.ready_after


@dataclass(frozen=True)
class Row:
    site: str
    kind: str
    cause: str
    duration_ms: float | None
    detail: str


@dataclass
class MemoryEventLog:
    rows: list[Row] = field(default_factory=list)

    async def record(
        self, site: str, kind: EventKind, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None:
        self.rows.append(Row(site, str(kind), cause, duration_ms, detail))

    def kinds(self, site: str | None = None) -> list[str]:
        return [r.kind for r in self.rows if site is None or r.site == site]
