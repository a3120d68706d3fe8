"""The interfaces the supervisor needs; adapters (Docker, Caddy, SQLite) implement them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from activator.config import HolderConfig, SiteConfig
from activator.model import Container, ContainerEvent

Clock = Callable[[], float]  # monotonic seconds


class ContainerRuntime(Protocol):
    async def find(self, site: SiteConfig) -> Container | None: ...

    async def find_holder(self, site: SiteConfig) -> Container | None: ...

    async def create(self, site: SiteConfig, holder_id: str | None = None) -> Container:
        """The site's container, joined to the holder's network namespace when holder_id is given."""
        ...

    async def create_holder(self, site: SiteConfig, image: str) -> Container: ...

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
    async def route(self, site: SiteConfig, host_port: int | None) -> None:
        """Send the site's traffic to its container on host_port, or to the activator when None."""
        ...

    async def in_flight(self) -> Mapping[str, int]:
        """Requests (streams and WebSockets included) open through the proxy, by upstream "host:port"."""
        ...


class EventLog(Protocol):
    async def record(
        self, site: str, kind: str, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None: ...
