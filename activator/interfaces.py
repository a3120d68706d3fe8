"""The interfaces the supervisor needs. Adapters implement them (Docker, Caddy, SQLite, HTTP, the system
clock), and so do the fakes in activator/testing.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from activator.config import HolderConfig, SiteConfig
from activator.model import Container, ContainerEvent, EventKind


class ContainerRuntime(Protocol):
    async def ensure_network(self) -> None:
        """The deployment's network, on which holders and plain sites are made (sites on it cannot reach each
        other): created, or adopted if it is there. Called once at startup, before anything is created."""
        ...

    async def find(self, site: SiteConfig) -> Container | None: ...

    async def find_holder(self, site: SiteConfig) -> Container | None: ...

    async def create(self, site: SiteConfig, holder_id: str | None = None, name: str | None = None) -> Container:
        """The site's container, joined to the holder's network namespace when holder_id is given; named
        `name` instead of the site's container name (a release starting beside the live one).
        Raises ContainerExists when a container of that name is there already."""
        ...

    async def create_holder(self, site: SiteConfig, image: str, name: str | None = None) -> Container: ...

    async def rename(self, container_id: str, name: str) -> None: ...

    async def ensure_holder_image(self, holder: HolderConfig) -> bool: ...

    async def start(self, site: SiteConfig, container_id: str) -> Container:
        """Start the container and return it with its published port (running=False if it already died).
        A site joined to a holder publishes none: its port is the holder's."""
        ...

    async def stop(self, container_id: str, grace: float) -> None: ...

    async def pause(self, container_id: str) -> None: ...

    async def unpause(self, container_id: str) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    async def list_deployment(self) -> list[Container]: ...

    async def set_cpu_shares(self, container_id: str, shares: int) -> None: ...

    async def prune_own_images(self, keep: list[str]) -> tuple[int, int]: ...

    async def last_log_line(self, container_id: str) -> str: ...

    def watch(self, on_event: Callable[[ContainerEvent], None]) -> None:
        """Call on_event (on the event loop) for every state change of this deployment's containers."""
        ...


class Router(Protocol):
    """The proxy in front of the sites. A route is the container's host port, or None for the activator."""

    async def load(self, routes: Mapping[str, int | None]) -> None:
        """Replace the proxy's whole config with one route per configured site."""
        ...

    async def route(self, site: str, host_port: int | None) -> None:
        """Send the site's traffic to its container on host_port, or to the activator when None."""
        ...

    async def routes(self) -> Mapping[str, int | None]:
        """What the proxy routes each site to now, read from the proxy (a site it has no route for is absent)."""
        ...

    async def in_flight(self) -> Mapping[str, int]:
        """Requests (streams and WebSockets included) open through the proxy, by upstream "host:port"."""
        ...


class Prober(Protocol):
    async def probe(self, site: SiteConfig, port: int) -> bool:
        """One readiness probe of the app on host_port: True once it answers."""
        ...


class EventLog(Protocol):
    async def record(
        self, site: str, kind: EventKind, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """The one clock: monotonic seconds for every decision and duration, wall time only for records."""

    def monotonic(self) -> float: ...

    def wall(self) -> float:
        """Unix seconds: for records, and to read the timestamps of Caddy's access log."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[object]:
        """Like asyncio.timeout: the block is cancelled after `seconds`, raising TimeoutError."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable: ...
