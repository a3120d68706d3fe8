"""Faults a review of the rewritten supervisor found (each of these tests failed before its fix): a recovery
that the engine fails, backoffs after a stable run, persistent sites whose start someone else began, holders
that die during a pause, route changes under way, failed event writes, waits past start_timeout, shutdown."""

from __future__ import annotations

import asyncio
import itertools

from activator.core.policy import Action
from activator.errors import AppExited, SiteUnavailable, StartFailed, StartTimeout
from activator.model import SiteState, Strategy
from activator.testing.clock import settle
from activator.testing.rig import site_config
from activator.testing.runtime import App, EngineError
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import container, drained, holder, holder_dies, running


async def test_a_recovery_the_engine_fails_ends_stopped_and_its_waiters_get_a_503(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    gate = r.runtime.gate("find_holder", "a")
    r.runtime.fail("find_holder", EngineError("docker: connection reset"), site="a")
    await holder_dies(r, "a")
    waiter = r.request("a")
    await settle()
    gate.release()
    await r.clock.run_until(waiter.done)
    assert isinstance(waiter.exception(), StartFailed)  # an answer with Retry-After, not an error page
    assert r["a"].state is SiteState.STOPPED and r.sup.work.transition(r["a"]) is None
    assert "holder_failed" in r.events.kinds("a")
    assert isinstance(await r.answer("a"), int)  # the next request brings it back


async def test_crashes_at_start_after_a_stable_run_back_off_doubling(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT, restart_backoff=1.0, restart_backoff_max=60.0))
    await r.until("p", SiteState.RUNNING)
    await r.clock.advance(120.0)  # a stable run
    r.runtime.apps["p"] = App(exit_after=0, exit_code=1)  # from now on it exits at every start
    r.runtime.crash("p")
    await settle()
    times = [r["p"].crashes.times[-1]]
    for _ in range(4):
        await r.clock.run_until(lambda: r["p"].crashes.times[-1] != times[-1], limit=200)
        times.append(r["p"].crashes.times[-1])
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps == [1, 2, 4, 8]


async def test_a_persistent_site_whose_restart_a_request_began_is_tried_again(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT, restart_backoff=1.0))
    await r.until("p", SiteState.RUNNING)
    r.runtime.crash("p")
    await settle()
    gate = r.runtime.gate("start", "p")
    r.runtime.fail("start", StartFailed("p", "docker could not start it: transient"), site="p")
    await r.clock.advance(0.5)
    request = r.request("p")  # a request begins the start before the restart timer
    await r.clock.advance(1.0)  # the timer fires while that start is held at the engine
    gate.release()
    await r.clock.run_until(request.done)
    assert isinstance(request.exception(), StartFailed)
    await r.until("p", SiteState.RUNNING, limit=10.0)  # tried again by itself


async def test_a_holder_that_dies_during_a_pause_leaves_no_cut_off_paused_site(rig: MakeRig) -> None:
    r = await rig(site_config("a", start_timeout=5.0))
    port = await running(r, "a")
    r.router.open[port] = 1
    drain = r.sup.drainer.begin(r["a"], Action.PAUSE, "idle")
    assert drain is not None
    await r.clock.advance(0.2)
    await holder_dies(r, "a")
    r.router.open[port] = 0
    await r.clock.run_until(drain.done)
    await r.clock.advance(1.0)
    assert r["a"].state is SiteState.STOPPED and container(r, "a").status == "exited"  # stopped, not paused
    began = r.clock.monotonic()
    assert await r.answer("a") == holder(r, "a").host_port
    assert r.clock.monotonic() - began < 1.0


async def test_a_drain_waits_for_a_route_change_under_way_before_it_stops(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    gate = asyncio.Event()
    real_route = r.router.route

    async def slow_route(site: str, port: int | None) -> None:
        if port is not None:
            await gate.wait()
        await real_route(site, port)

    r.router.route = slow_route  # type: ignore[method-assign]
    port = await r.answer("a")
    await settle()
    assert r.routed_to("a") is None  # the change to the container is under way
    drain = r.sup.drainer.begin(r["a"], Action.STOP, "budget")
    assert drain is not None
    await r.clock.advance(1.0)
    assert not drain.done() and container(r, "a").status == "running"  # not stopped under Caddy's nose
    gate.set()
    await r.clock.run_until(drain.done)
    assert r.router.changes == [("a", port), ("a", None)] and container(r, "a").status == "exited"


async def test_an_event_row_that_cannot_be_written_changes_no_answer(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(exit_after=0, exit_code=3)

    async def full(*args: object, **kwargs: object) -> None:
        raise OSError("database or disk is full")

    r.events.record = full  # type: ignore[assignment]
    assert isinstance(await r.answer("a"), AppExited)


async def test_a_wake_that_falls_back_to_a_start_answers_within_start_timeout(rig: MakeRig) -> None:
    r = await rig(site_config("a", start_timeout=5.0))
    await running(r, "a")
    await drained(r, "a", Action.PAUSE)
    r.runtime.apps["a"] = App(answers=False)
    began = r.clock.monotonic()
    assert isinstance(await r.answer("a"), StartTimeout)
    assert r.clock.monotonic() - began <= 5.0 + 0.01


async def test_a_shutdown_during_a_drain_leaves_caddy_routed_to_the_running_site(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["a"], Action.STOP, "idle") is not None
    await r.clock.run_until(lambda: r.routed_to("a") is None)
    await r.sup.close()
    assert r["a"].state is SiteState.RUNNING and container(r, "a").status == "running"
    assert r.routed_to("a") == port  # it keeps serving through Caddy while the activator is down


async def test_a_lazy_site_removed_from_outside_is_stopped_not_crashed(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")
    c = container(r, "a")
    r.runtime._emit(c, "kill")  # docker rm -f: a kill, the death, then the removal, delivered together
    await r.runtime.remove(c.id)
    await settle()
    assert r["a"].state is SiteState.STOPPED and r["a"].crashes.times == ()
    assert ("stopped", "external") in [(row.kind, row.cause) for row in r.events.rows]


async def test_a_failing_look_at_the_container_is_no_error_for_the_request(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    r.runtime.fail("find", EngineError("docker: connection reset"), site="a")
    async with r.sup.lease(r["a"]) as lease:
        assert lease.port == port
        await lease.no_answer()  # logged, not raised
    assert not isinstance(await r.answer("a"), SiteUnavailable)


async def test_a_timed_out_starts_container_is_stopped_only_after_the_engine_started_it(rig: MakeRig) -> None:
    r = await rig(site_config("a", start_timeout=1.0))
    start = r.runtime.gate("start", "a")  # the engine is slow to start it
    answer = r.request("a")
    await r.clock.advance(1.5)
    assert isinstance(answer.exception(), StartTimeout)
    assert ("stop", "a") not in r.runtime.calls  # a stop now could come before the start, which then wins
    start.release()
    await r.clock.run_until(lambda: container(r, "a").status == "exited")
    assert r["a"].state is SiteState.STOPPED


async def test_a_look_after_no_answer_ends_as_soon_as_the_app_answers_again(rig: MakeRig) -> None:
    # An app that starts itself again inside its container (a dev server after a change) refuses for a moment:
    # the request waits for it to answer, not for the whole look's window.
    r = await rig(site_config("a"))
    await running(r, "a")
    r.runtime.apps["a"] = App(answers=False)  # restarting
    async with r.sup.lease(r["a"]) as lease:
        began = r.clock.monotonic()
        look = asyncio.ensure_future(lease.no_answer())
        await r.clock.advance(0.3)
        assert not look.done()  # it runs and does not answer yet: looked at again
        r.runtime.apps["a"] = App()  # listening again
        await r.clock.run_until(look.done)
        assert r.clock.monotonic() - began < 0.5  # (the window is 1 s)
    assert r["a"].state is SiteState.RUNNING
