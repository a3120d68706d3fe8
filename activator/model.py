"""The shared vocabulary: kinds, strategies, states, and what a running site is reached at."""

from __future__ import annotations

import enum
from dataclasses import dataclass

MiB = 1024 * 1024


class Kind(enum.StrEnum):
    STATIC = "static"
    NODE = "node"
    ASTRO = "astro"
    NEXT = "next"

    @property
    def default_memory(self) -> int:
        return _DEFAULT_MEMORY[self]


_DEFAULT_MEMORY = {
    Kind.STATIC: 64 * MiB,
    Kind.NODE: 256 * MiB,
    Kind.ASTRO: 128 * MiB,
    Kind.NEXT: 512 * MiB,
}


class Strategy(enum.StrEnum):
    LAZY = "lazy"  # started by the first request, stopped when idle
    PERSISTENT = "persistent"  # started with the activator, kept running


class SiteState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"  # also while waking from paused
    RUNNING = "running"
    DRAINING = "draining"  # routed to the activator, waiting for in-flight work before a pause or stop
    PAUSED = "paused"


@dataclass(frozen=True)
class Container:
    """What the runtime knows of one site's container."""

    id: str
    status: str  # the engine's word: created, running, paused, exited, ...
    host_port: int | None = None  # the published port on 127.0.0.1, known while running or paused
    exit_code: int | None = None
    site: str = ""

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def paused(self) -> bool:
        return self.status == "paused"


@dataclass(frozen=True)
class ContainerEvent:
    """A state change reported by the engine's event stream."""

    container_id: str
    site: str
    action: str  # "start", "die", "oom", "destroy", ...
    exit_code: int | None = None
