"""A deploy's swap through the real Supervisor on fakes and virtual time: the new release's container starts
beside the old, takes the route only once it answers, the old one drains and goes, and the new one takes the
site's names; a release that never answers changes nothing; a stopped site is just given the new image."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from activator.core.policy import Action
from activator.errors import BudgetFull, SwapFailed
from activator.model import Network, SiteState
from activator.testing.clock import settle
from activator.testing.rig import Rig, site_config
from activator.testing.runtime import App, EngineError
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import before_up, container, found_at_startup, holder, running

RUNNING, STOPPED = SiteState.RUNNING, SiteState.STOPPED


def swap(r: Rig, name: str, image: str) -> asyncio.Task[str]:
    return asyncio.ensure_future(r.sup.swapper.swap(r[name], lambda now: replace(now, release=image), "deploy"))


@pytest.mark.parametrize("network", [Network.HOLDER, Network.PLAIN])
async def test_a_running_site_is_swapped_beside_its_old_container_which_drains_first(
    rig: MakeRig, network: Network
) -> None:
    r = await rig(site_config("a", network=network))
    old_port = await running(r, "a")
    old = container(r, "a")
    r.runtime.apps["a:2"] = App(ready_after=1.0)
    held = asyncio.Event()
    request = r.request("a", hold=held)  # open on the old container through the swap
    await settle()
    assert request.done() is False and r.sup.lifecycle is not None

    task = swap(r, "a", "a:2")
    await r.clock.advance(0.5)
    assert r.routed_to("a") == old_port  # the new one does not answer yet: the old one keeps the route
    await r.clock.run_until(lambda: r.routed_to("a") != old_port)
    new_port = r.routed_to("a")
    assert new_port is not None and r["a"].host_port == new_port and r["a"].state is RUNNING
    await r.clock.run_until(task.done)
    assert task.result() == "swapped"  # the new one serves: the deploy is done, the old one drains behind it
    await r.clock.advance(2.0)
    assert old.status == "running" and old.name == "dialup-fake-a.old"  # a request is still open on it
    held.set()
    await r.clock.run_until(lambda: old.id not in r.runtime.containers)  # stopped and removed
    now = container(r, "a")  # the new container has the site's name now
    assert now.id == r["a"].container_id and now.image == "a:2" and now.status == "running"
    if network is Network.HOLDER:
        assert holder(r, "a").id == r["a"].joined and holder(r, "a").host_port == new_port
    assert {c.name for c in r.runtime.containers.values()} == {
        "dialup-fake-a",
        *(["dialup-fake-a.holder"] if network is Network.HOLDER else []),
    }
    assert await r.answer("a") == new_port
    assert "not_allowed" not in r.events.kinds()


async def test_a_release_that_never_answers_is_removed_and_the_old_one_serves_on(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    old = container(r, "a")
    r.runtime.apps["a:bad"] = App(answers=False, last_line="Error: cannot find module 'expresss'")
    task = swap(r, "a", "a:bad")
    await r.clock.run_until(task.done, 60)
    with pytest.raises(SwapFailed, match=r"did not answer in 5s.*expresss"):
        task.result()
    assert r.routed_to("a") == port and r["a"].container_id == old.id and r["a"].config.run_image == "a:1"
    assert {c.name for c in r.runtime.containers.values()} == {"dialup-fake-a", "dialup-fake-a.holder"}
    assert await r.answer("a") == port


async def test_a_stopped_site_gets_the_new_image_at_its_next_start(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    r.runtime.crash("a", 0)
    await r.until("a", STOPPED)
    task = swap(r, "a", "a:2")
    await r.clock.run_until(task.done)
    assert task.result() == "at its next start"
    assert r.runtime.of("a") is None  # the old release's container is gone
    await running(r, "a")
    assert container(r, "a").image == "a:2"


async def test_the_old_container_dying_during_the_swap_leaves_the_site_on_the_new_one(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    r.runtime.apps["a:2"] = App(ready_after=1.0)
    task = swap(r, "a", "a:2")
    await r.clock.advance(0.3)
    r.runtime.crash("a")  # the old one, while the new one is still probed
    await r.clock.run_until(task.done)
    assert task.result() == "swapped"
    assert r["a"].state is RUNNING and container(r, "a").image == "a:2"
    assert r.routed_to("a") == r["a"].host_port
    assert "not_allowed" not in r.events.kinds()


async def test_a_swap_that_does_not_fit_the_budget_evicts_an_idle_site_first(rig: MakeRig) -> None:
    # 64 MiB each: a, b running and a's second container need 192 MiB of a 160 MiB budget (holders use 1 MiB).
    r = await rig(site_config("a"), site_config("b"), budget=180 * 1024 * 1024)
    await running(r, "b")
    await running(r, "a")
    task = swap(r, "a", "a:2")
    await r.clock.run_until(task.done)
    assert task.result() == "swapped"
    assert r["b"].state is STOPPED and "evicted" in r.events.kinds("b")


async def test_a_swap_cut_short_by_the_activators_end_is_cleaned_up_at_the_next_start() -> None:
    async with before_up(site_config("a")) as r:
        container_id, port = await found_at_startup(r, r["a"].config, "running")
        staged_holder = await r.runtime.create_holder(r["a"].config, "dialup-holder:1", "dialup-fake-a.holder.next")
        staged = await r.runtime.create(r["a"].config, staged_holder.id, "dialup-fake-a.next")
        await r.up()
        assert r["a"].state is RUNNING and r["a"].container_id == container_id and r["a"].host_port == port
        assert staged.id not in r.runtime.containers and staged_holder.id not in r.runtime.containers
        assert [row.detail for row in r.events.rows if row.kind == "removed"] == [
            "holder was a swap cut short",
            "site was a swap cut short",
        ]


async def test_a_paused_site_is_stopped_then_gets_the_new_image_at_its_next_start(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    drain = r.sup.drainer.begin(r["a"], Action.PAUSE, "idle")
    assert drain is not None
    await r.clock.run_until(drain.done)
    assert r["a"].state is SiteState.PAUSED
    task = swap(r, "a", "a:2")
    await r.clock.run_until(task.done)
    assert task.result() == "at its next start" and r["a"].state is STOPPED and r.runtime.of("a") is None
    await running(r, "a")
    assert container(r, "a").image == "a:2"


async def test_a_swap_that_cannot_fit_even_by_evicting_fails_and_the_old_one_serves_on(rig: MakeRig) -> None:
    r = await rig(site_config("a"), budget=100 * 1024 * 1024)  # a (64 MiB) and a second a: 128 MiB
    port = await running(r, "a")
    task = swap(r, "a", "a:2")
    await r.clock.run_until(task.done)
    with pytest.raises(SwapFailed, match="memory budget"):
        task.result()
    assert r.routed_to("a") == port and r["a"].state is RUNNING and "refused" in r.events.kinds("a")


async def test_the_old_holder_dying_during_the_swap_leaves_the_site_on_the_new_one(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    old_holder = holder(r, "a")
    r.runtime.apps["a:2"] = App(ready_after=1.0)
    task = swap(r, "a", "a:2")
    await r.clock.advance(0.3)
    r.runtime.stop_from_outside("a", role="holder")  # the old holder, while the new container is probed
    await r.clock.run_until(task.done)
    assert task.result() == "swapped"
    await r.clock.run_until(lambda: old_holder.id not in r.runtime.containers)
    assert r["a"].state is RUNNING and holder(r, "a").status == "running" and r["a"].joined == holder(r, "a").id
    assert await r.answer("a") == r["a"].host_port
    assert "not_allowed" not in r.events.kinds()


async def test_while_two_containers_run_the_budget_counts_both(rig: MakeRig) -> None:
    # 180 MiB: a (64 MiB) and its second container (64 MiB) fit; b (64 MiB) does not fit beside them.
    r = await rig(site_config("a"), site_config("b"), budget=180 * 1024 * 1024)
    await running(r, "a")
    r.runtime.apps["a:2"] = App(ready_after=2.0)
    held = asyncio.Event()
    open_request = r.request("a", hold=held)  # open on the old container: it drains after the switch
    task = swap(r, "a", "a:2")
    await r.clock.advance(0.5)
    assert isinstance(await r.answer("b", limit=1.0), BudgetFull)  # a is busy swapping: nothing to evict
    await r.clock.run_until(task.done)
    await r.clock.advance(0.1)
    assert isinstance(await r.answer("b", limit=1.0), BudgetFull)  # the old one still counts while it drains
    held.set()
    await r.clock.run_until(open_request.done)
    await r.clock.run_until(lambda: len([c for c in r.runtime.containers.values() if c.site == "a"]) == 2)
    assert isinstance(await r.answer("b"), int)  # the old container is gone: room for b


async def test_two_swaps_of_one_site_run_one_after_the_other_each_from_the_settings_before_it(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    r.runtime.apps["a:2"] = App(ready_after=1.0)
    first = swap(r, "a", "a:2")
    second = asyncio.ensure_future(
        r.sup.swapper.swap(r["a"], lambda now: replace(now, memory=96 << 20), "reload")  # a reload's change
    )
    await r.clock.run_until(lambda: first.done() and second.done())
    assert first.result() == "swapped" and second.result() == "swapped"
    # The second began from what the first left: the release of the first, with the memory of the second.
    assert container(r, "a").image == "a:2" and r["a"].config.memory_limit == 96 << 20


async def test_a_rename_the_engine_refuses_leaves_the_old_container_serving(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    old = container(r, "a")
    r.runtime.fail("rename", EngineError("the engine refused the rename"), site="a")
    task = swap(r, "a", "a:2")
    await r.clock.run_until(task.done)
    with pytest.raises(SwapFailed, match="could not rename"):
        task.result()
    assert r.routed_to("a") == port and r["a"].container_id == old.id and container(r, "a").id == old.id
    assert {c.name for c in r.runtime.containers.values()} == {"dialup-fake-a", "dialup-fake-a.holder"}
    assert r.sup.evictor.used() == r["a"].config.memory_limit + r.sup.holders.memory()  # nothing left reserved


async def test_from_a_holder_to_a_network_of_its_own_the_old_holder_goes_too(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    old_holder = holder(r, "a")
    task = asyncio.ensure_future(
        r.sup.swapper.swap(r["a"], lambda now: replace(now, network=Network.PLAIN, release="a:2"), "reload")
    )
    await r.clock.run_until(task.done)
    assert task.result() == "swapped" and r["a"].joined is None and r.sup.holders.current(r["a"]) is None
    await r.clock.run_until(lambda: old_holder.id not in r.runtime.containers)
    assert {c.name for c in r.runtime.containers.values()} == {"dialup-fake-a"}
    assert await r.answer("a") == r["a"].host_port == container(r, "a").host_port
