"""The transition table through the supervisor: a tour of scenarios that records every (state, event) pair the
Lifecycle lets through the table, and the rows of the table it reaches. test_transitions.py tests the table
itself; this tests that the supervisor's parts really ask for each of its rows."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

import activator.supervisor.lifecycle as lifecycle_module
from activator.core import transitions
from activator.core.policy import Action
from activator.core.transitions import TABLE, Decision, Event, Facts
from activator.errors import AppExited, StartFailed, StartTimeout
from activator.metrics import NOT_ALLOWED
from activator.model import SiteState
from activator.testing.clock import settle
from activator.testing.rig import site_config
from activator.testing.runtime import App
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import (
    before_up,
    container,
    drained,
    found_at_startup,
    holder,
    holder_dies,
    running,
)

STOPPED, STARTING, RUNNING = SiteState.STOPPED, SiteState.STARTING, SiteState.RUNNING
DRAINING, PAUSED = SiteState.DRAINING, SiteState.PAUSED
Row = tuple[SiteState, Event]


def record_allowed(monkeypatch: pytest.MonkeyPatch) -> set[Row]:
    """Wrap the Lifecycle's `decide`: every (state, event) it allows is added to the returned set."""
    seen: set[Row] = set()
    real = transitions.decide

    def decide(state: SiteState, event: Event, facts: Facts) -> Decision:
        decision = real(state, event, facts)
        if decision.allowed:
            seen.add((state, event))
        return decision

    monkeypatch.setattr(lifecycle_module, "decide", decide)
    return seen


async def tour(rig: MakeRig) -> None:
    """Scenarios that give every row of the table its chance; each ends where the next can go on."""
    r = await rig(*(site_config(name) for name in "abcde"))

    # a: start, up; drain from running and stop; drain and pause; wake; a drain kept by a request; a drain
    # from paused.
    port = await running(r, "a")
    await drained(r, "a", Action.STOP)
    await running(r, "a")
    await drained(r, "a", Action.PAUSE)
    assert await running(r, "a") == port
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["a"], Action.STOP, "idle") is not None
    await r.clock.advance(0.2)
    assert await r.answer("a") == port and r["a"].state is RUNNING
    r.router.open[port] = 0
    await drained(r, "a", Action.PAUSE)
    await drained(r, "a", Action.STOP)

    # b: a start that fails; a death while running, while paused, while draining, and while starting.
    r.runtime.fail("start", StartFailed("b", "the engine is busy"), site="b")
    assert isinstance(await r.answer("b"), StartFailed)
    await running(r, "b")
    r.runtime.crash("b")
    await r.until("b", STOPPED)
    await running(r, "b")
    await drained(r, "b", Action.PAUSE)
    r.runtime.crash("b")
    await r.until("b", STOPPED)
    port = await running(r, "b")
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["b"], Action.STOP, "idle") is not None
    await r.clock.advance(0.2)
    r.runtime.crash("b")  # dies while draining; the drain's stop then finds it gone
    await r.until("b", STOPPED)
    r.router.open[port] = 0
    r.runtime.apps["b"] = App(ready_after=1.0)
    starting = r.request("b")
    await r.clock.advance(0.3)
    r.runtime.crash("b")  # dies while starting: the start sees it
    await r.clock.run_until(starting.done)
    assert isinstance(starting.exception(), AppExited)

    # c: its holder dies while it runs, and while it is paused, with nobody waiting.
    await running(r, "c")
    await holder_dies(r, "c")
    await r.clock.run_until(lambda: r["c"].state is STOPPED and r.events.kinds("c").count("holder_restarted") == 1)
    await running(r, "c")
    await drained(r, "c", Action.PAUSE)
    await holder_dies(r, "c")
    await r.clock.run_until(lambda: r["c"].state is STOPPED and r.events.kinds("c").count("holder_restarted") == 2)

    # d: its holder dies while it is stopped, while it starts, and while it drains.
    await holder_dies(r, "d")
    await r.clock.run_until(lambda: "holder_restarted" in r.events.kinds("d"))
    r.runtime.apps["d"] = App(ready_after=1.0)
    starting = r.request("d")
    await r.clock.advance(0.3)
    await holder_dies(r, "d")
    await r.clock.run_until(starting.done)
    port = starting.result()
    await r.clock.run_until(lambda: r.routed_to("d") == port)
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["d"], Action.STOP, "idle") is not None
    await r.clock.advance(0.2)
    await holder_dies(r, "d")
    await r.until("d", STOPPED)
    await r.clock.run_until(lambda: holder(r, "d").status == "running")

    # e: the late death of a container we stopped: a start that timed out, its container stopped after.
    r.runtime.apps["e"] = App(answers=False)
    assert isinstance(await r.answer("e"), StartTimeout) and r["e"].state is STOPPED
    await r.clock.run_until(lambda: container(r, "e").status == "exited")

    # a again: a deploy's swap of the running site, then one during which the old container dies.
    await running(r, "a")
    swapped = asyncio.ensure_future(r.sup.swapper.swap(r["a"], lambda now: replace(now, release="a:2"), "deploy"))
    await r.clock.run_until(swapped.done)
    r.runtime.apps["a:3"] = App(ready_after=1.0)
    swapped = asyncio.ensure_future(r.sup.swapper.swap(r["a"], lambda now: replace(now, release="a:3"), "deploy"))
    await r.clock.advance(0.3)
    r.runtime.crash("a")
    await r.clock.run_until(swapped.done)
    assert swapped.result() == "swapped" and r["a"].state is RUNNING

    # f, g: found at startup by a new activator, one running and one paused.
    async with before_up(site_config("f"), site_config("g")) as found:
        await found_at_startup(found, found["f"].config, "running")
        await found_at_startup(found, found["g"].config, "paused")
        await found.up()
        assert found["f"].state is RUNNING and found["g"].state is PAUSED

    await settle()
    assert "not_allowed" not in r.events.kinds()  # nothing on the tour asked for a change the table refuses


async def test_the_tour_applies_every_row_of_the_table(rig: MakeRig, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_allowed(monkeypatch)
    await tour(rig)
    await settle()
    assert seen == set(TABLE), sorted(set(TABLE) - seen, key=str)


async def test_a_change_the_table_does_not_allow_is_refused_recorded_and_counted(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    before = NOT_ALLOWED.labels("a")._value.get()
    r.sup.lifecycle.keep(r["a"], "a keep for a site that is not draining")  # a bug elsewhere, as it would show
    await settle()
    assert r["a"].state is STOPPED and r.routed_to("a") is None  # nothing changed
    (row,) = [row for row in r.events.rows if row.kind == "not_allowed"]
    assert row.site == "a" and "keep is not allowed while stopped" in row.detail
    assert NOT_ALLOWED.labels("a")._value.get() == before + 1
