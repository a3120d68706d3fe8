"""One site's record: its state and what goes with it, what the engine said of its current run, and the
requests the activator holds or forwards for it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from activator.config import REPLICA_SUFFIX, SiteConfig
from activator.core.policy import Backoff, CrashRecord
from activator.model import ContainerEvent, SiteState, Strategy

# Held requests are released into a just-started app at most this many at a time, counted until each one's
# response headers arrive: hundreds at once overflow a small listen backlog (busybox httpd's is 9), and the
# overflow then waits on TCP SYN retries (1 s, 3 s, 7 s, ...). Long responses do not hold a slot.
FORWARD_CONCURRENCY = 16


class Site:
    """A site's state, container, port and crashes. Read them anywhere; they change only in Lifecycle
    (supervisor/lifecycle.py), the one writer, which applies the transition table (core/transitions.py).
    A unit test checks that no other module assigns these fields."""

    def __init__(self, config: SiteConfig) -> None:
        self._site_config = config
        self._state = SiteState.STOPPED
        self._container_id: str | None = None
        self._joined: str | None = None  # the holder id its container joined; None: its own network
        self._host_port: int | None = None  # known while running or paused
        self._up_since: float | None = None  # monotonic: when it last started, woke or was adopted
        self._failure = ""  # why the last start failed, or the last crash
        self._crashes = CrashRecord()
        self.run = RunWatch()
        self.demand = Demand()

    @property
    def config(self) -> SiteConfig:
        """Its settings: from the config file, with its live release's image (a deploy changes it)."""
        return self._site_config

    @property
    def name(self) -> str:
        return self._site_config.name

    @property
    def state(self) -> SiteState:
        return self._state

    @property
    def container_id(self) -> str | None:
        return self._container_id

    @property
    def joined(self) -> str | None:
        return self._joined

    @property
    def host_port(self) -> int | None:
        return self._host_port

    @property
    def up_since(self) -> float | None:
        return self._up_since

    @property
    def failure(self) -> str:
        return self._failure

    @property
    def crashes(self) -> CrashRecord:
        return self._crashes

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.config.restart_backoff, self.config.restart_backoff_max)

    @property
    def holds_memory(self) -> bool:
        return self._state in (SiteState.RUNNING, SiteState.PAUSED, SiteState.STARTING, SiteState.DRAINING)

    def open_requests(self, in_flight: Mapping[str, int]) -> int:
        """Requests open to the site: through Caddy's route (its in-flight counts, by site) or forwarded here.
        A scalable site's count has its second instance's too: Caddy counts by route file, and that file sends
        its requests to the site's container while the second instance does not serve (so a drain or a swap of
        the site waits for them as well; while both serve it waits for more than it must, never for less)."""
        second = in_flight.get(self.name + REPLICA_SUFFIX, 0) if self.config.strategy is Strategy.SCALABLE else 0
        return in_flight.get(self.name, 0) + second + self.demand.active


@dataclass
class Demand:
    """Requests for the site that the activator holds or forwards. Written only by Supervisor.lease."""

    waiting: int = 0  # held until the site runs
    active: int = 0  # being forwarded to the container now: open work a drain waits for
    forwarding: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(FORWARD_CONCURRENCY))


@dataclass(frozen=True)
class Exit:
    """How a container run ended."""

    code: int | None
    killed: bool = False  # someone signalled it first (docker stop or kill): not a crash of the app
    oom: bool = False  # the engine killed it for its memory
    cut_off: bool = False  # not ended: its network holder died, so it can never answer where it is


class RunWatch:
    """What the engine said of the site's current container run. Changed only through its methods: the
    Starter arms it around a start or wake, and Recovery feeds it the engine's events."""

    def __init__(self) -> None:
        self._exited: asyncio.Future[Exit] | None = None
        self._started = True  # the engine reported the current run's start: earlier events are an older run's
        self._killed = False
        self._oom = False
        self._ended = False  # the current run died (its container exited, or was killed)
        self._last_ns: dict[str, int] = {}  # per action, the time of the newest event seen

    def arm(self, *, new_run: bool) -> asyncio.Future[Exit]:
        """Watch for the run's end while a start (new_run) or a wake probes it."""
        self._exited = asyncio.get_running_loop().create_future()
        if new_run:
            self._started = False  # until the engine reports this start, a "die" is the run before's, late
        return self._exited

    @property
    def killed(self) -> bool:
        """Signalled from outside (docker stop or kill) since its run started: it may be shutting down."""
        return self._killed

    @property
    def oom(self) -> bool:
        return self._oom

    @property
    def ended(self) -> bool:
        """The engine reported the current run's death: there is no app behind its port."""
        return self._ended

    def renewed(self) -> None:
        """Another container took the site over (a swap): it runs, nobody signalled it, it has not died."""
        self._started, self._killed, self._oom, self._ended = True, False, False, False

    def watching(self) -> asyncio.Future[Exit]:
        assert self._exited is not None, "arm() first"
        return self._exited

    def disarm(self) -> None:
        self._exited = None

    def interrupt(self) -> None:
        """Fail a probe in progress (its holder died: the container is cut off)."""
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(Exit(None, cut_off=True))

    def observe(self, event: ContainerEvent) -> Exit | None:
        """Take one of the engine's events for this site's container. Returns the Exit of a death that no
        start or wake is watching (the caller's to handle), else None."""
        if event.time_ns:
            # A reconnected event stream replays the events of its last second: each is seen once.
            if event.time_ns <= self._last_ns.get(event.action, 0):
                return None
            if event.action == "die" and event.time_ns < self._last_ns.get("start", 0):
                return None  # the death of a run before the current one, reported late
            self._last_ns[event.action] = event.time_ns
        if event.action == "start":
            self._started, self._killed, self._oom, self._ended = True, False, False, False
        elif event.action == "oom":
            self._oom = True
        elif event.action == "kill":
            self._killed = True
        elif event.action == "die":
            end = Exit(event.exit_code, self._killed, self._oom)
            self._killed, self._ended = False, True
            if self._exited is None or self._exited.done():
                return end
            if self._started:  # else the run before this start, reported late: not this start's
                self._exited.set_result(end)
        return None
