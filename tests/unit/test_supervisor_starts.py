"""Starts and wakes through the supervisor on the fakes: single flight, wakes and their failures, and the
answer each kind of failed start gives the requests that wait for it."""

from __future__ import annotations

from activator.core.policy import Action
from activator.errors import AppExited, ImageMissing, QueueFull, StartTimeout
from activator.model import SiteState
from activator.testing.clock import settle
from activator.testing.rig import site_config
from activator.testing.runtime import App, EngineError
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import before_up, container, drained, holder, running, starts_since

# -- single flight ------------------------------------------------------------------------------------------


async def test_fifty_requests_for_a_cold_site_make_one_start_and_get_one_port(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(ready_after=1.0)
    mark = len(r.runtime.calls)

    requests = [r.request("a") for _ in range(50)]
    await r.clock.advance(0.5)
    assert not any(t.done() for t in requests) and r["a"].demand.waiting == 50
    await r.clock.run_until(lambda: all(t.done() for t in requests))

    assert {t.result() for t in requests} == {holder(r, "a").host_port}
    assert starts_since(r, "a", mark) == 1 and container(r, "a").runs == 1
    assert r.events.kinds("a").count("start") == 1
    assert r["a"].state is SiteState.RUNNING


async def test_a_client_giving_up_does_not_cancel_the_start_for_the_others(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(ready_after=1.0)
    requests = [r.request("a") for _ in range(3)]
    await r.clock.advance(0.3)
    start = r.sup.work.transition(r["a"])
    assert start is not None

    requests[0].cancel()  # the client went away
    await r.clock.run_until(lambda: all(t.done() for t in requests))

    assert requests[0].cancelled() and not start.cancelled()
    assert requests[1].result() == requests[2].result() == holder(r, "a").host_port
    assert container(r, "a").runs == 1 and "start_failed" not in r.events.kinds("a")
    assert r["a"].state is SiteState.RUNNING and r["a"].demand.waiting == 0


# -- wakes --------------------------------------------------------------------------------------------------


async def test_a_paused_site_is_woken_not_started_and_routed_back_to_its_container(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    await drained(r, "a", Action.PAUSE)
    assert r.routed_to("a") is None and container(r, "a").status == "paused"
    mark = len(r.runtime.calls)

    assert await r.answer("a") == port
    await r.clock.run_until(lambda: r.routed_to("a") == port)

    assert ("unpause", "a") in r.runtime.calls[mark:] and starts_since(r, "a", mark) == 0
    assert r.events.kinds("a").count("wake") == 1 and r.events.kinds("a").count("start") == 1
    assert container(r, "a").runs == 1 and r["a"].state is SiteState.RUNNING


async def test_a_wake_that_fails_stops_the_container_and_starts_it_afresh(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    await drained(r, "a", Action.PAUSE)
    r.runtime.fail("unpause", EngineError("cannot unpause"), site="a")
    mark = len(r.runtime.calls)

    assert await r.answer("a") == port

    ops = [op for op, site in r.runtime.calls[mark:] if site == "a" and op in ("unpause", "stop", "start")]
    assert ops == ["unpause", "stop", "start"]
    assert container(r, "a").runs == 2 and r["a"].state is SiteState.RUNNING
    assert "wake" not in r.events.kinds("a") and r.events.kinds("a").count("start") == 2
    await r.clock.run_until(lambda: r.routed_to("a") == port)


# -- failed starts ------------------------------------------------------------------------------------------


async def test_an_app_that_exits_at_once_fails_every_waiting_request_with_its_exit(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(exit_after=0, exit_code=3, last_line="boom")

    requests = [r.request("a") for _ in range(3)]
    await r.clock.run_until(lambda: all(t.done() for t in requests))

    for task in requests:
        error = task.exception()
        assert isinstance(error, AppExited) and not error.oom
        assert "exited with code 3: boom" in error.reason
    assert r.events.kinds("a").count("crash") == 1 and r.events.kinds("a").count("start_failed") == 1
    assert r["a"].state is SiteState.STOPPED and r.routed_to("a") is None


async def test_an_app_that_never_answers_times_out_counts_a_crash_and_is_stopped(rig: MakeRig) -> None:
    r = await rig(site_config("a", start_timeout=5.0))
    r.runtime.apps["a"] = App(answers=False)
    began = r.clock.monotonic()

    request = r.request("a")
    await r.clock.advance(4.9)
    assert not request.done() and container(r, "a").status == "running"
    await r.clock.run_until(request.done)

    assert isinstance(request.exception(), StartTimeout)
    assert r.clock.monotonic() - began < 5.1
    assert r.events.kinds("a").count("crash") == 1 and len(r["a"].crashes.times) == 1
    await r.clock.run_until(lambda: container(r, "a").status == "exited")
    assert ("stop", "a") in r.runtime.calls and r["a"].state is SiteState.STOPPED


async def test_a_missing_image_is_answered_with_image_missing_and_is_no_crash() -> None:
    async with before_up(site_config("a")) as r:
        r.runtime.missing_images.add("a:1")
        await r.up()
        assert r["a"].container_id is None and "create_failed" in r.events.kinds("a")
        mark = len(r.runtime.calls)

        answer = await r.answer("a")

        assert isinstance(answer, ImageMissing) and "a:1" in answer.reason
        assert "crash" not in r.events.kinds("a") and r["a"].crashes.times == ()
        assert ("create", "a") in r.runtime.calls[mark:] and starts_since(r, "a", mark) == 0
        assert r["a"].state is SiteState.STOPPED and r["a"].container_id is None


async def test_a_request_past_max_waiting_is_refused_with_queue_full(rig: MakeRig) -> None:
    r = await rig(site_config("a", max_waiting=2))
    r.runtime.apps["a"] = App(ready_after=1.0)
    held = [r.request("a") for _ in range(2)]
    await settle()

    extra = r.request("a")
    await settle()

    assert extra.done() and isinstance(extra.exception(), QueueFull)
    await r.clock.run_until(lambda: all(t.done() for t in held))
    assert all(t.result() == holder(r, "a").host_port for t in held)
