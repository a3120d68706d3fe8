"""The memory budget at a start: idle sites evicted to make room (paused ones first, then the least recently
used), busy and persistent ones never, and a refusal that evicts nobody when nothing can make it fit."""

from __future__ import annotations

import asyncio

from activator.core.policy import Action
from activator.errors import BudgetFull
from activator.model import SiteState, Strategy
from activator.testing.rig import MiB, Rig, site_config
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import drained, running, starts_since

# Two static sites (64 MiB each) and the three sites' holders (1 MiB each in the rig): a third site will not fit.
TWO_SITES = 2 * 64 * MiB + 3 * MiB


async def two_running(r: Rig) -> None:
    """a, then b a second later: a is the least recently used."""
    await running(r, "a")
    await r.clock.advance(1.0)
    await running(r, "b")
    await r.clock.advance(1.0)


def evicted(r: Rig, name: str) -> list[str]:
    return [row.detail for row in r.events.rows if row.site == name and row.kind == "evicted"]


async def test_a_start_that_does_not_fit_evicts_the_least_recently_used_idle_site(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"), site_config("c"), budget=TWO_SITES)
    await two_running(r)

    assert isinstance(await r.answer("c"), int)

    assert evicted(r, "a") == ["made room for c"] and evicted(r, "b") == []
    assert [r[n].state for n in "abc"] == [SiteState.STOPPED, SiteState.RUNNING, SiteState.RUNNING]
    c_started = max(i for i, call in enumerate(r.runtime.calls) if call == ("start", "c"))
    assert r.runtime.calls.index(("stop", "a")) < c_started  # room made first, then the start
    assert r.sup.evictor.used() <= TWO_SITES


async def test_a_paused_site_is_evicted_before_a_running_one(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"), site_config("c"), budget=TWO_SITES)
    await two_running(r)
    await drained(r, "b", Action.PAUSE)  # b is the more recent, but paused

    assert isinstance(await r.answer("c"), int)

    assert evicted(r, "b") == ["made room for c"] and evicted(r, "a") == []
    assert [r[n].state for n in "abc"] == [SiteState.RUNNING, SiteState.STOPPED, SiteState.RUNNING]


async def test_a_site_with_a_request_open_is_not_evicted(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"), site_config("c"), budget=TWO_SITES)
    await two_running(r)
    done = asyncio.Event()
    open_request = r.request("a", hold=done)  # a, the least recently used, is serving a request
    await r.clock.advance(0.01)

    assert isinstance(await r.answer("c"), int)

    assert evicted(r, "a") == [] and evicted(r, "b") == ["made room for c"]
    assert r["a"].state is SiteState.RUNNING and ("stop", "a") not in r.runtime.calls
    done.set()
    await r.clock.run_until(open_request.done)
    assert open_request.result() == r["a"].host_port


async def test_a_start_that_nothing_can_make_room_for_is_refused_and_evicts_nobody(rig: MakeRig) -> None:
    persistent = {"strategy": Strategy.PERSISTENT}
    r = await rig(site_config("a", **persistent), site_config("b", **persistent), site_config("c"), budget=TWO_SITES)
    await r.clock.run_until(lambda: r["a"].state is r["b"].state is SiteState.RUNNING)
    mark = len(r.runtime.calls)

    answer = await r.answer("c")

    assert isinstance(answer, BudgetFull) and "memory budget full" in answer.reason
    assert r.events.kinds("c")[-2:] == ["refused", "start_failed"]
    assert not [row for row in r.events.rows if row.kind == "evicted"]
    assert [op for op, _ in r.runtime.calls[mark:] if op in ("stop", "pause")] == []
    assert starts_since(r, "c", mark) == 0 and r["c"].state is SiteState.STOPPED
    assert r["a"].state is r["b"].state is SiteState.RUNNING
