"""A supervisor wired on fakes, with the helpers the state-machine tests (and bench/) drive it through."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activator.config import BudgetConfig, Config, ServerConfig, SiteConfig
from activator.errors import SiteUnavailable
from activator.model import Kind, Network, SiteState, Strategy
from activator.supervisor import Supervisor
from activator.supervisor.site import Site
from activator.testing.clock import FakeClock, settle
from activator.testing.proxy import FakeProber, FakeRouter, MemoryEventLog
from activator.testing.runtime import DEPLOYMENT, FakeRuntime

MiB = 1 << 20


def site_config(name: str, **overrides: Any) -> SiteConfig:
    """A site as the tests like it: lazy, static (64 MiB), a holder, a 5 s start timeout."""
    values: dict[str, Any] = {
        "name": name,
        "hosts": (f"{name}.test",),
        "image": f"{name}:1",
        "port": 8080,
        "kind": Kind.STATIC,
        "strategy": Strategy.LAZY,
        "start_timeout": 5.0,
        "idle_timeout": 300.0,
        "drain_timeout": 5.0,
        "stop_grace": 1.0,
        "network": Network.HOLDER,
    }
    values.update(overrides)
    return SiteConfig(**values)


async def _measure(container_id: str) -> int:
    return 1 * MiB


@dataclass
class Rig:
    """A Supervisor on a FakeClock, FakeRuntime, FakeRouter, FakeProber and MemoryEventLog."""

    sites: tuple[SiteConfig, ...]
    budget: int = 1024 * MiB
    clock: FakeClock = field(default_factory=FakeClock)

    def __post_init__(self) -> None:
        self.config = Config(
            path=Path("rig.toml"),
            server=ServerConfig(name=DEPLOYMENT),  # the fake engine's names are this deployment's
            sites=self.sites,
            budget=BudgetConfig(memory=self.budget),
        )
        self.runtime = FakeRuntime(self.clock)
        self.router = FakeRouter()
        self.events = MemoryEventLog()
        self.prober = FakeProber(self.runtime, self.clock)
        self.sup = Supervisor(self.config, self.runtime, self.router, self.events, self.clock, self.prober, _measure)
        self.runtime.watch(self.sup.on_container_event)

    def __getitem__(self, name: str) -> Site:
        return self.sup.sites[name]

    async def up(self) -> Rig:
        """What `dialup up` does with the supervisor: adopt, load the routes, keep them, start persistent sites."""
        await self.sup.adopt()
        await self.sup.routes.load()
        self.sup.routes.start()
        self.sup.start_persistent()
        await settle()
        return self

    async def close(self) -> None:
        await self.sup.close()

    def request(self, name: str, hold: asyncio.Event | None = None) -> asyncio.Task[int]:
        """A request for the site, as the edge makes it: a lease (held open until `hold` is set, if given).
        The task ends with the port it was given, or raises the SiteUnavailable it was answered with."""

        async def one() -> int:
            async with self.sup.lease(self[name]) as lease:
                if hold is not None:
                    await hold.wait()
                return lease.port

        return asyncio.ensure_future(one())

    async def answer(self, name: str, limit: float = 60.0) -> int | SiteUnavailable:
        """Send one request and advance virtual time until it is answered: the port, or the error."""
        task = self.request(name)
        await self.clock.run_until(task.done, limit)
        try:
            return task.result()
        except SiteUnavailable as exc:
            return exc

    async def until(self, name: str, state: SiteState, limit: float = 60.0) -> None:
        await self.clock.run_until(lambda: self[name].state is state, limit)

    def routed_to(self, name: str) -> int | None:
        """What the fake Caddy routes the site to."""
        return self.router.caddy.get(name)
