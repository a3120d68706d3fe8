"""One site's live state: what the supervisor knows of it between events."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from activator.config import SiteConfig
from activator.core.policy import Backoff, CrashRecord
from activator.model import Container, SiteState

# Held requests are released into a just-started app at most this many at a time, counted until each one's
# response headers arrive: hundreds at once overflow a small listen backlog (busybox httpd's is 9), and the
# overflow then waits on TCP SYN retries (1 s, 3 s, 7 s, ...). Long responses do not hold a slot.
FORWARD_CONCURRENCY = 16


@dataclass
class Site:
    """One site's live state. Only the supervisor and the reaper change it, always on the event loop."""

    config: SiteConfig
    state: SiteState = SiteState.STOPPED
    container_id: str | None = None
    host_port: int | None = None  # known while running or paused
    transition: asyncio.Task[int] | None = None  # a start or a wake in progress
    draining: asyncio.Task[bool] | None = None  # a drain, then pause or stop, in progress
    exited: asyncio.Future[int | None] | None = None  # resolved by a "die" event during a start
    stopping: asyncio.Future[None] | None = None  # stopping the container of a start that timed out
    waiting: int = 0  # requests held by the activator for this site
    active: int = 0  # requests the activator is forwarding to the container now
    up_since: float | None = None  # when it last started, woke or was adopted
    failure: str = ""  # why the last start failed, or the last crash
    crashes: CrashRecord = field(default_factory=CrashRecord)
    oom: bool = False  # the engine reported an OOM kill; the "die" that follows is one
    killed: bool = False  # someone sent it a signal (docker stop/kill): the "die" that follows is no crash
    run_started: bool = True  # the engine reported the current start (events before it are of an older run)
    restart: asyncio.TimerHandle | None = None
    looking: asyncio.Task[None] | None = None  # looking again at a container a forward got no answer from
    holder: Container | None = None  # the running network holder (network = "holder"), with its host port
    holder_task: asyncio.Task[Container] | None = None  # bringing the holder up
    holder_memory: int = 0  # bytes the holder uses, counted in the budget
    joined: str | None = None  # the holder id the site's container joined; None: its own network
    # Set once Caddy's route points at the running container. Caddy 2.6 closes every proxied WebSocket
    # when its config changes, so a WebSocket is connected only after the switch (see README: known limits).
    routed: asyncio.Event = field(default_factory=asyncio.Event)
    forwarding: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(FORWARD_CONCURRENCY))

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.config.restart_backoff, self.config.restart_backoff_max)

    @property
    def busy(self) -> bool:
        """Starting, waking, draining, or holding requests: not to be paused, stopped or evicted now."""
        return self.transition is not None or self.draining is not None or self.waiting > 0

    @property
    def holds_memory(self) -> bool:
        return self.state in (SiteState.RUNNING, SiteState.PAUSED, SiteState.STARTING, SiteState.DRAINING)

    def open_requests(self, in_flight: Mapping[str, int]) -> int:
        """Requests open to the container: through Caddy (from its upstream counts) or forwarded here."""
        through_caddy = in_flight.get(f"127.0.0.1:{self.host_port}", 0) if self.host_port else 0
        return through_caddy + self.active
