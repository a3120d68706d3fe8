"""Deaths the engine reports (crashes, OOM kills, stops from outside, dead network holders) and what the
supervisor makes of them: the state, Caddy's route, the event rows, restarts and their backoff."""

from __future__ import annotations

import math

from activator.errors import SiteFailing, StartFailed
from activator.model import SiteState, Strategy
from activator.testing.clock import settle
from activator.testing.rig import site_config
from activator.testing.runtime import App
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import container, holder, holder_dies, running, starts_since

# -- crashes ------------------------------------------------------------------------------------------------


async def test_a_lazy_site_that_crashes_is_stopped_and_routed_to_the_activator_at_once(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")

    r.runtime.crash("a", code=2)
    await settle()  # no virtual time passes

    assert r["a"].state is SiteState.STOPPED and r["a"].host_port is None
    assert r.routed_to("a") is None
    assert r.events.kinds("a")[-1] == "crash" and "exited with code 2" in r["a"].failure
    assert await r.answer("a") == port and container(r, "a").runs == 2  # the next request starts it again


async def test_an_oom_kill_is_an_oom_row_with_the_apps_last_log_line(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(last_line="FATAL: JavaScript heap out of memory")
    await running(r, "a")

    r.runtime.oom_kill("a")
    await r.until("a", SiteState.STOPPED)
    await settle()

    oom = [row for row in r.events.rows if row.site == "a" and row.kind == "oom"]
    assert len(oom) == 1 and "crash" not in r.events.kinds("a")
    assert "more memory than its limit" in oom[0].detail
    assert oom[0].detail.endswith("FATAL: JavaScript heap out of memory")


async def test_a_persistent_site_restarts_after_its_backoff_doubling_on_the_next_crash(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT, restart_backoff=1.0))
    await r.until("p", SiteState.RUNNING)

    for backoff in (1.0, 2.0):
        mark = len(r.runtime.calls)
        r.runtime.crash("p")
        await settle()
        assert r["p"].state is SiteState.STOPPED
        await r.clock.advance(backoff - 0.05)
        assert r["p"].state is SiteState.STOPPED and starts_since(r, "p", mark) == 0  # not before
        await r.clock.advance(0.1)
        assert r["p"].state is SiteState.RUNNING and starts_since(r, "p", mark) == 1  # and yes after

    assert r.events.kinds("p").count("crash") == 2 and container(r, "p").runs == 3


async def test_five_crashes_in_five_minutes_make_the_site_failing_until_its_backoff_ends(rig: MakeRig) -> None:
    r = await rig(site_config("a", restart_backoff=1.0))
    for _ in range(5):
        await running(r, "a")
        r.runtime.crash("a")
        await r.until("a", SiteState.STOPPED)
    retry = r.sup.lifecycle.retry_in(r["a"])
    assert retry == 16.0  # the fifth in a row: 1 s doubled four times
    mark = len(r.runtime.calls)

    refused = r.request("a")
    await settle()  # answered at once

    error = refused.exception()
    assert isinstance(error, SiteFailing) and error.retry_after == math.ceil(retry)
    assert "crashed 5 times" in error.reason and starts_since(r, "a", mark) == 0
    await r.clock.advance(retry + 0.01)
    assert isinstance(await r.answer("a"), int) and starts_since(r, "a", mark) == 1  # tried again


async def test_a_lazy_site_stopped_from_outside_is_stopped_not_crashed(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    await running(r, "a")

    r.runtime.stop_from_outside("a")
    await r.until("a", SiteState.STOPPED)
    await settle()

    stopped = [row for row in r.events.rows if row.site == "a" and row.kind == "stopped"]
    assert [row.cause for row in stopped] == ["external"] and "exit code 143" in stopped[0].detail
    assert "crash" not in r.events.kinds("a") and r["a"].crashes.times == ()
    assert r.routed_to("a") is None


# -- network holders ----------------------------------------------------------------------------------------


async def test_a_holder_dying_under_an_idle_site_stops_it_and_restarts_the_holder(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    changes = len(r.router.changes)

    await holder_dies(r, "a")
    await r.until("a", SiteState.STOPPED)
    await settle()

    assert r.router.changes[changes:] == [("a", None)]  # changed once, at the end, to the activator
    assert holder(r, "a").status == "running" and holder(r, "a").host_port != port
    assert container(r, "a").status == "exited"  # cut off in the old namespace: stopped
    kinds = r.events.kinds("a")
    assert kinds.index("holder_died") < kinds.index("holder_restarted")


async def test_requests_arriving_while_a_holder_is_brought_back_get_the_site_on_its_new_port(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    old = await running(r, "a")
    restart = r.runtime.gate("start", "a")  # the holder's restart, held

    changes = len(r.router.changes)
    await holder_dies(r, "a")
    await r.clock.run_until(restart.reached.is_set)
    assert r["a"].state is SiteState.STARTING
    requests = [r.request("a") for _ in range(3)]
    await settle()
    restart.release()
    await r.clock.run_until(lambda: all(t.done() for t in requests))

    new = holder(r, "a").host_port
    assert new != old and {t.result() for t in requests} == {new}
    assert r["a"].state is SiteState.RUNNING
    await r.clock.run_until(lambda: r.routed_to("a") == new)
    assert r.router.changes[changes:] == [("a", new)]  # the recovery started it: one route change, at the end
    assert "start_failed" not in r.events.kinds("a") and "crash" not in r.events.kinds("a")


async def test_a_persistent_site_whose_holder_dies_runs_again_by_itself(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT))
    await r.until("p", SiteState.RUNNING)
    old = r["p"].host_port

    await holder_dies(r, "p")
    await r.until("p", SiteState.RUNNING)

    new = holder(r, "p").host_port
    assert new != old and r["p"].host_port == new
    await r.clock.run_until(lambda: r.routed_to("p") == new)
    assert container(r, "p").runs == 2 and "holder_restarted" in r.events.kinds("p")


async def test_a_holder_dying_during_a_cold_start_starts_again_and_the_held_requests_get_the_site(
    rig: MakeRig,
) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(ready_after=1.0)
    requests = [r.request("a") for _ in range(3)]
    await r.clock.advance(0.3)  # probing

    await holder_dies(r, "a")
    await r.clock.run_until(lambda: all(t.done() for t in requests))

    assert {t.result() for t in requests} == {holder(r, "a").host_port}
    assert r["a"].state is SiteState.RUNNING and container(r, "a").runs == 2
    kinds = r.events.kinds("a")
    assert "holder_died" in kinds and kinds.count("start") == 1
    assert "start_failed" not in kinds and "crash" not in kinds


async def test_a_persistent_site_whose_restart_after_its_holder_died_fails_is_tried_again(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT))
    await r.until("p", SiteState.RUNNING)
    holder_start = r.runtime.gate("start", "p")
    await holder_dies(r, "p")
    await r.clock.run_until(holder_start.reached.is_set)
    site_start = r.runtime.gate("start", "p")  # the next start call: the site's container, in the new holder
    holder_start.release()
    await r.clock.run_until(site_start.reached.is_set)
    r.runtime.fail("start", StartFailed("p", "docker could not start it: the engine is busy"), site="p")
    site_start.release()
    await r.until("p", SiteState.STOPPED)
    assert "start_failed" in r.events.kinds("p") and "crash" not in r.events.kinds("p")

    await r.until("p", SiteState.RUNNING, limit=10.0)  # the next try, a backoff step later, goes through
