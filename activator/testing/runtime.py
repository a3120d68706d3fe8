"""A fake container engine: containers, their apps and the engine's events, in memory, on a FakeClock.

Like the real engine (DockerRuntime runs the SDK in threads), an operation runs to its end even when whoever
awaits it is cancelled. Any operation can be held at a Gate, so that a test stops it at a known await and
then cancels something or delivers an event in the order it chooses; any can be made to fail.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from activator.config import HolderConfig, SiteConfig
from activator.errors import ContainerExists, ContainerGone, ImageMissing, StartFailed
from activator.model import Container, ContainerEvent
from activator.testing.clock import FakeClock

T = TypeVar("T")
DEPLOYMENT = "fake"
SIGTERM_EXIT, SIGKILL_EXIT = 143, 137


class EngineError(Exception):
    """What the fake engine raises where Docker would answer with an API error."""


@dataclass
class App:
    """How a site's app behaves once its container starts."""

    ready_after: float = 0.0  # virtual seconds until it answers probes
    exit_after: float | None = None  # exits by itself this long after it starts (None: never)
    exit_code: int = 1
    answers: bool = True  # False: it runs and never answers (a hung app)
    last_line: str = ""  # its last log line


@dataclass
class FakeContainer:
    id: str
    name: str
    site: str
    role: str  # "site" or "holder"
    status: str = "created"  # created, running, paused, exited
    network_mode: str = ""  # "container:<holder id>" for a site in its holder's namespace
    publishes: int | None = None  # the container port it publishes (holders, plain sites)
    isolated: bool = True  # False: as if made on Docker's default bridge by a dialup from before isolation
    host_port: int | None = None
    exit_code: int | None = None
    started_at: float = 0.0
    runs: int = 0  # how many times it was started
    start_seq: int = 0  # the engine's count of starts when it last started (orders starts at one instant)
    image: str = ""

    def view(self) -> Container:
        alive = self.status in ("running", "paused")
        return Container(
            id=self.id,
            status=self.status,
            host_port=self.host_port if alive else None,
            exit_code=None if alive else self.exit_code,
            site=self.site,
            role=self.role,
            network_mode=self.network_mode,
            publishes=self.publishes,
            isolated=self.isolated,
            name=self.name,
        )


class Gate:
    """Holds the calls of one operation (for one site, or all) until released."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()

    async def passage(self) -> None:
        self.reached.set()
        await self._open.wait()

    def release(self) -> None:
        self._open.set()


@dataclass
class _Plan:
    gates: dict[tuple[str, str], Gate] = field(default_factory=dict)
    failures: dict[tuple[str, str], list[Exception]] = field(default_factory=dict)


class FakeRuntime:
    """ContainerRuntime in memory. `apps[site]` says how each site's app behaves (App() by default)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.containers: dict[str, FakeContainer] = {}
        self.apps: dict[str, App] = {}
        self.missing_images: set[str] = set()
        self.calls: list[tuple[str, str]] = []  # (operation, site) in the order they were made
        self.events: list[ContainerEvent] = []  # every event delivered
        self._plan = _Plan()
        self._ids = itertools.count(1)
        self._ports = itertools.count(40001)
        self._ns = itertools.count(1)
        self._starts = itertools.count(1)
        self._listener: Callable[[ContainerEvent], None] | None = None

    # -- what a test controls ------------------------------------------------------------------

    def gate(self, op: str, site: str = "*") -> Gate:
        """Hold the next calls of `op` (for `site`, or any) until the returned gate is released."""
        gate = self._plan.gates[(op, site)] = Gate()
        return gate

    def fail(self, op: str, error: Exception, site: str = "*", times: int = 1) -> None:
        self._plan.failures.setdefault((op, site), []).extend([error] * times)

    def app_of(self, c: FakeContainer) -> App:
        """How the container's app behaves: as set for its image (a release), else for its site."""
        return self.apps.get(c.image) or self.apps.get(c.site) or App()

    def of(self, site: str, role: str = "site") -> FakeContainer | None:
        """The site's container (or holder) by its name, as the engine finds it."""
        name = f"dialup-{DEPLOYMENT}-{site}" + (".holder" if role == "holder" else "")
        return next((c for c in self.containers.values() if c.name == name), None)

    def crash(self, site: str, code: int = 1) -> None:
        self._end(self._running(site), code)

    def oom_kill(self, site: str) -> None:
        c = self._running(site)
        self._emit(c, "oom")
        self._end(c, SIGKILL_EXIT)

    def stop_from_outside(self, site: str, role: str = "site") -> None:
        """`docker stop`: a kill (SIGTERM) event, then the death."""
        c = self._running(site, role)
        self._emit(c, "kill")
        self._end(c, SIGTERM_EXIT)

    def replay(self, events: list[ContainerEvent]) -> None:
        """Deliver these events again, as a reconnected event stream does."""
        for event in events:
            self._deliver(event)

    # -- ContainerRuntime ----------------------------------------------------------------------

    async def ensure_network(self) -> None:
        await self._op("ensure_network", "*", lambda: None)  # recorded only: the fake has no networks

    async def find(self, site: SiteConfig) -> Container | None:
        return await self._op("find", site.name, lambda: self._view(site.name, "site"))

    async def find_holder(self, site: SiteConfig) -> Container | None:
        return await self._op("find_holder", site.name, lambda: self._view(site.name, "holder"))

    async def create(self, site: SiteConfig, holder_id: str | None = None, name: str | None = None) -> Container:
        def create() -> Container:
            if site.run_image in self.missing_images:
                raise ImageMissing(site.name, site.run_image)
            taken = name or f"dialup-{DEPLOYMENT}-{site.name}"
            if any(c.name == taken for c in self.containers.values()):
                raise ContainerExists(site.name, taken)
            mode = f"container:{holder_id}" if holder_id else ""
            publishes = None if holder_id else site.port
            c = self._add(taken, site.name, "site", network_mode=mode, publishes=publishes, image=site.run_image)
            return c.view()

        return await self._op("create", site.name, create)

    async def create_holder(self, site: SiteConfig, image: str, name: str | None = None) -> Container:
        def create() -> Container:
            taken = name or f"dialup-{DEPLOYMENT}-{site.name}.holder"
            return self._add(taken, site.name, "holder", publishes=site.port).view()

        return await self._op("create_holder", site.name, create)

    async def ensure_holder_image(self, holder: HolderConfig) -> bool:
        return False

    async def start(self, site: SiteConfig, container_id: str) -> Container:
        def start() -> Container:
            c = self._get(container_id)
            if c.status in ("running", "paused"):
                return c.view()
            if c.network_mode:
                holder = self.containers.get(c.network_mode.removeprefix("container:"))
                if holder is None or holder.status != "running":
                    raise StartFailed(site.name, "docker could not start it: its network holder is not running")
            c.status, c.exit_code, c.started_at, c.runs = "running", None, self.clock.monotonic(), c.runs + 1
            c.start_seq = next(self._starts)
            if c.publishes is not None:
                c.host_port = next(self._ports)
            self._emit(c, "start")
            app = self.app_of(c) if c.role == "site" else App()
            if app.exit_after == 0:
                self._end(c, app.exit_code)
            elif app.exit_after is not None:
                run, code = c.runs, app.exit_code
                self.clock.call_later(app.exit_after, lambda: self._exit_by_itself(c, run, code))
            return c.view()

        return await self._op("start", site.name, start, container_id)

    async def stop(self, container_id: str, grace: float) -> None:
        def stop() -> None:
            c = self._get(container_id)
            if c.status in ("running", "paused"):
                self._emit(c, "kill")
                self._end(c, SIGTERM_EXIT)

        await self._op("stop", self._site_of(container_id), stop, container_id)

    async def pause(self, container_id: str) -> None:
        await self._op("pause", self._site_of(container_id), lambda: self._flip(container_id, "running", "paused"))

    async def unpause(self, container_id: str) -> None:
        await self._op("unpause", self._site_of(container_id), lambda: self._flip(container_id, "paused", "running"))

    def _flip(self, container_id: str, was: str, becomes: str) -> None:
        c = self._get(container_id)
        if c.status != was:
            raise EngineError(f"container {container_id} is not {was}")
        c.status = becomes
        self._emit(c, "pause" if becomes == "paused" else "unpause")

    async def rename(self, container_id: str, name: str) -> None:
        def rename() -> None:
            c = self._get(container_id)
            if any(o.name == name for o in self.containers.values() if o is not c):
                raise EngineError(f"the name {name} is in use")
            c.name = name

        await self._op("rename", self._site_of(container_id), rename, container_id)

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            c = self._get(container_id)
            if c.status in ("running", "paused"):
                self._end(c, SIGKILL_EXIT)
            del self.containers[container_id]
            self._emit(c, "destroy")

        await self._op("remove", self._site_of(container_id), remove, container_id)

    async def list_deployment(self) -> list[Container]:
        return await self._op("list", "*", lambda: [c.view() for c in self.containers.values()])

    async def set_cpu_shares(self, container_id: str, shares: int) -> None:
        await self._op("update", self._site_of(container_id), lambda: None)

    async def prune_own_images(self, keep: list[str]) -> tuple[int, int]:
        return 0, 0

    async def last_log_line(self, container_id: str) -> str:
        c = self.containers.get(container_id)
        return await self._op("logs", self._site_of(container_id), lambda: self.app_of(c).last_line if c else "")

    def watch(self, on_event: Callable[[ContainerEvent], None]) -> None:
        self._listener = on_event

    # -- inside the engine ---------------------------------------------------------------------

    async def _op(self, op: str, site: str, body: Callable[[], T], container_id: str = "") -> T:
        """Record the call, pass its gate, fail it if planned, then do it, to the end even if the caller is
        cancelled meanwhile (the real engine's thread goes on too)."""
        self.calls.append((op, site))
        return await asyncio.shield(asyncio.ensure_future(self._run(op, site, body)))

    async def _run(self, op: str, site: str, body: Callable[[], T]) -> T:
        for key in ((op, site), (op, "*")):
            if (gate := self._plan.gates.pop(key, None)) is not None:
                await gate.passage()
        for key in ((op, site), (op, "*")):
            if planned := self._plan.failures.get(key):
                raise planned.pop(0)
        return body()

    def _add(self, name: str, site: str, role: str, **fields: object) -> FakeContainer:
        c = FakeContainer(id=f"{site}-{role}-{next(self._ids):04d}", name=name, site=site, role=role)
        c = replace(c, **fields)  # type: ignore[arg-type]
        self.containers[c.id] = c
        self._emit(c, "create")
        return c

    def _get(self, container_id: str) -> FakeContainer:
        c = self.containers.get(container_id)
        if c is None:
            raise ContainerGone(container_id)
        return c

    def _site_of(self, container_id: str) -> str:
        c = self.containers.get(container_id)
        return c.site if c else "?"

    def _view(self, site: str, role: str) -> Container | None:
        c = self.of(site, role)
        return c.view() if c else None

    def _running(self, site: str, role: str = "site") -> FakeContainer:
        c = self.of(site, role)
        assert c is not None and c.status in ("running", "paused"), f"{site}'s {role} is not running"
        return c

    def _exit_by_itself(self, c: FakeContainer, run: int, code: int) -> None:
        if c.runs == run and c.status == "running":
            self._end(c, code)

    def _end(self, c: FakeContainer, code: int) -> bool:
        c.status, c.exit_code = "exited", code
        if c.role == "holder":  # its namespace goes: every container in it is cut off (not stopped)
            c.host_port = None
        self._emit(c, "die", code)
        return True

    def _emit(self, c: FakeContainer, action: str, code: int | None = None) -> None:
        time_ns = int(self.clock.wall() * 1e9) + next(self._ns)  # distinct, and in order
        self._deliver(ContainerEvent(c.id, c.site, action, code, c.role, time_ns))

    def _deliver(self, event: ContainerEvent) -> None:
        self.events.append(event)
        if self._listener is not None:
            # Like the real event thread: delivered on the loop, after the call that caused it returns.
            asyncio.get_running_loop().call_soon(self._listener, event)
