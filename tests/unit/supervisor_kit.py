"""Steps the supervisor tests share (test_supervisor_*.py): a site brought up, drained, killed, or found at
startup, each driven through the real Supervisor on the fakes (activator/testing) and on virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from activator.config import SiteConfig
from activator.core.policy import Action
from activator.model import SiteState
from activator.testing.clock import settle
from activator.testing.rig import Rig
from activator.testing.runtime import FakeContainer


async def running(r: Rig, name: str) -> int:
    """One request, answered with a port, and Caddy's route on that port: the site runs."""
    port = await r.answer(name)
    assert isinstance(port, int), port
    await r.clock.run_until(lambda: r.routed_to(name) == port)
    return port


async def drained(r: Rig, name: str, action: Action = Action.STOP, cause: str = "idle") -> None:
    """Drain the site and pause or stop it, as the reaper or an eviction does; it must go through."""
    drain = r.sup.drainer.begin(r[name], action, cause)
    assert drain is not None, f"{name} cannot be drained while {r[name].state}"
    await r.clock.run_until(drain.done)
    assert drain.result() is True
    assert r[name].state is (SiteState.PAUSED if action is Action.PAUSE else SiteState.STOPPED)


async def holder_dies(r: Rig, name: str) -> None:
    """`docker stop` of the site's network holder, and the engine's events delivered."""
    r.runtime.stop_from_outside(name, role="holder")
    await settle()


def holder(r: Rig, name: str) -> FakeContainer:
    found = r.runtime.of(name, role="holder")
    assert found is not None
    return found


def container(r: Rig, name: str) -> FakeContainer:
    found = r.runtime.of(name)
    assert found is not None
    return found


def starts_since(r: Rig, name: str, mark: int) -> int:
    """Engine start calls for the site (its container, or its holder) from call number `mark` on."""
    return r.runtime.calls[mark:].count(("start", name))


@asynccontextmanager
async def before_up(*sites: SiteConfig, **options: Any) -> AsyncIterator[Rig]:
    """A Rig not yet up, so that a test can put containers in the engine first (then `await r.up()`)."""
    built = Rig(tuple(sites), **options)
    try:
        yield built
    finally:
        await built.close()


async def found_at_startup(r: Rig, site: SiteConfig, status: str = "running") -> tuple[str, int]:
    """Containers left by an earlier activator: the site's holder (running) and its container, joined to it
    and left `status` (created, running or paused). Returns the container's id and the holder's port."""
    made = await r.runtime.create_holder(site, "dialup-holder:1")
    made = await r.runtime.start(site, made.id)
    assert made.host_port is not None
    joined = await r.runtime.create(site, made.id)
    if status in ("running", "paused"):
        await r.runtime.start(site, joined.id)
    if status == "paused":
        await r.runtime.pause(joined.id)
    await settle()
    return joined.id, made.host_port
