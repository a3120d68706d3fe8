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
    DEVELOPMENT = "development"  # a live-editing container: more memory, fewer processes, a bigger CPU share

    @property
    def defaults(self) -> KindDefaults:
        return _KIND_DEFAULTS[self]


@dataclass(frozen=True)
class KindDefaults:
    memory: int
    cpus: float  # CPU quota, in cores
    cpu_shares: int  # relative weight when the CPU is contended (Docker's default is 1024)
    pids: int


# From the VPS plan: user sites share 2.1 GB and 1.0 CPU. Sites get half of Docker's default weight, so the
# activator (outside Docker) and development containers win when the CPU is contended.
_KIND_DEFAULTS = {
    Kind.STATIC: KindDefaults(64 * MiB, 0.25, 512, 100),
    Kind.NODE: KindDefaults(256 * MiB, 0.5, 512, 100),
    Kind.ASTRO: KindDefaults(128 * MiB, 0.5, 512, 100),
    Kind.NEXT: KindDefaults(512 * MiB, 1.0, 512, 100),
    Kind.DEVELOPMENT: KindDefaults(512 * MiB, 0.25, 1024, 50),
}


class Strategy(enum.StrEnum):
    LAZY = "lazy"  # started by the first request, stopped when idle
    PERSISTENT = "persistent"  # started with the activator, kept running
    # Kept running like a persistent site, with a second instance while its request rate calls for one
    # (core/scaling.py, supervisor/scaler.py).
    SCALABLE = "scalable"

    @property
    def kept_up(self) -> bool:
        """Started with the activator and restarted after a crash; never stopped for idleness nor evicted."""
        return self is not Strategy.LAZY


class Network(enum.StrEnum):
    # The site's container joins the network namespace of a small long-lived "holder" container that owns the
    # published port, so a start skips Docker's network setup (bridge endpoint, veth, port mapping).
    HOLDER = "holder"
    PLAIN = "plain"  # the site's container has its own network and publishes its own port


class ActivitySource(enum.StrEnum):
    """Where per-site request counts come from (`[server] activity`)."""

    METRICS = "metrics"  # Caddy's per-host request counters, read from its admin API every reaper tick
    LOG = "log"  # Caddy's access log, one JSON line per request streamed to access_log_listen


class SiteState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"  # also while waking from paused
    RUNNING = "running"
    DRAINING = "draining"  # routed to the activator, waiting for in-flight work before a pause or stop
    PAUSED = "paused"


class EventKind(enum.StrEnum):
    """The kinds of event rows (the README lists them; a test keeps the two the same)."""

    CREATED = "created"  # a site's container was created
    CREATE_FAILED = "create_failed"  # ... could not be, at startup
    START = "start"
    START_FAILED = "start_failed"
    WAKE = "wake"
    PAUSED = "paused"
    STOPPED = "stopped"
    EVICTED = "evicted"  # paused or stopped to make room (for a site, or for the host's memory)
    REFUSED = "refused"  # a start that cannot fit in the memory budget
    CRASH = "crash"
    OOM = "oom"
    REMOVED = "removed"  # a container whose site left the config
    REPLACED = "replaced"  # a container that can never serve again where it is
    HOLDER_CREATED = "holder_created"
    HOLDER_DIED = "holder_died"
    HOLDER_RESTARTED = "holder_restarted"
    HOLDER_FAILED = "holder_failed"
    NOT_ALLOWED = "not_allowed"  # a state change the transition table does not allow: refused, and a bug
    CADDY_RESTARTED = "caddy_restarted"  # the Caddy dialup manages died, and was started again with its config
    CADDY_DOWN = "caddy_down"  # a Caddy dialup does not manage stopped answering
    CADDY_UP = "caddy_up"  # ... and answers again
    THRESHOLD = "threshold"
    NEAR_LIMIT = "near_limit"
    STORAGE_FREED = "storage_freed"
    CPU_WEIGHTS_LOWERED = "cpu_weights_lowered"
    CPU_WEIGHTS_RESTORED = "cpu_weights_restored"
    BUILD_STARTED = "build_started"
    BUILD_DONE = "build_done"  # with its seconds
    BUILD_FAILED = "build_failed"  # with the reason: the live release keeps serving
    DEPLOYED = "deployed"  # a release went live
    ROLLED_BACK = "rolled_back"  # the release before went live again
    BACKUP_STARTED = "backup_started"  # with its class (site: "(backups)")
    BACKUP_DONE = "backup_done"  # with its seconds, the bytes it added and its snapshot
    BACKUP_FAILED = "backup_failed"  # with the reason: loud, and in `dialup status` and `dialup backups`
    BACKUP_SKIPPED = "backup_skipped"  # the one before still ran
    BACKUP_VERIFIED = "backup_verified"  # `restic check` read back a share of the data and found it sound
    SCALED_UP = "scaled_up"  # a scalable site's second instance serves (the rate that called for it)
    SCALED_DOWN = "scaled_down"  # ... was drained and stopped
    SCALE_REFUSED = "scale_refused"  # ... could not start (the budget, say): the site serves on one
    RATE_LIMITED = "rate_limited"  # over its rate limit: its route moved to the activator, which answers 429s
    RATE_LIMIT_LIFTED = "rate_limit_lifted"  # back under it: its route is on its container again
    LIMITS_TIGHTENED = "limits_tightened"  # host congestion: rate limits of non-persistent sites tightened
    LIMITS_RESTORED = "limits_restored"  # ... and back as configured once it cleared


@dataclass(frozen=True)
class Container:
    """What the runtime knows of one site's container."""

    id: str
    status: str  # the engine's word: created, running, paused, exited, ...
    host_port: int | None = None  # the published port on 127.0.0.1, known while running or paused
    exit_code: int | None = None
    site: str = ""
    role: str = "site"  # "site", or "holder" for a site's network holder
    network_mode: str = ""  # the engine's HostConfig.NetworkMode: "container:<holder id>" for a joined site
    publishes: int | None = None  # the container port it publishes, whatever its state
    # On the deployment's own network (or in a holder's namespace); False: on Docker's default bridge, where
    # every container reaches every other (made by a dialup from before sites were isolated).
    isolated: bool = True
    name: str = ""  # the engine's name for it (listings only)

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
    role: str = "site"
    time_ns: int = 0  # the engine's timeNano: with the id and action, what tells a replayed event from a new one
