"""The races and faults issue 10 found by reading the code, each as a scripted interleaving on fakes: events
delivered in a chosen order, operations held at a chosen await, cancellations where they hurt.

Each of these failed on the code before the fix (the same scenarios, written against that code's API, in the
closing note of issue 10). Faults 5a (stops starving starts in the docker thread pool), 6 (wildcard hosts)
and 7 (`dialup down` and a second `dialup up`) are adapter-level: tests/unit/test_docker_runtime.py,
test_hosts.py, test_statelock.py, and tests/integration/test_commands.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from activator.config import Config, Thresholds
from activator.core.policy import Action
from activator.errors import SiteFailing, StartFailed, StartTimeout
from activator.model import ContainerEvent, SiteState, Strategy
from activator.monitor import HostReading, Monitor
from activator.supervisor.routes import UNKNOWN
from activator.supervisor.site import Exit, RunWatch
from activator.testing.clock import settle
from activator.testing.rig import MiB, site_config
from activator.testing.runtime import App, EngineError
from tests.unit.conftest import MakeRig

# -- 1. a start that times out while it evicts; a create cancelled half way -------------------------------


async def test_1_a_start_timing_out_while_it_evicts_leaves_the_victims_drain_running(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("c", start_timeout=2.0), budget=100 * MiB)
    assert isinstance(await r.answer("a"), int)
    stop = r.runtime.gate("stop", "a")  # a's app takes its time to stop

    answer = r.request("c")
    await r.clock.advance(2.5)  # c's start_timeout passes while it waits for a's eviction
    assert stop.reached.is_set() and isinstance(answer.exception(), StartTimeout)
    assert r["a"].state is SiteState.DRAINING and r.sup.work.drain(r["a"]) is not None  # not cancelled with it
    assert r["c"].crashes.times == ()  # a slow admission is not the app's fault

    stop.release()
    await r.until("a", SiteState.STOPPED)
    assert isinstance(await r.answer("c"), int)  # a's memory is free again: no "memory budget full"


async def test_1_a_create_whose_start_was_cancelled_is_kept(rig: MakeRig) -> None:
    r = await rig(site_config("a", start_timeout=1.0))
    await r.runtime.remove(r["a"].container_id or "")  # gone: the next start creates it
    await settle()
    assert r["a"].container_id is None
    create = r.runtime.gate("create", "a")

    answer = r.request("a")
    await r.clock.advance(1.5)  # the start times out while the engine is creating the container
    assert create.reached.is_set() and isinstance(answer.exception(), StartTimeout)
    create.release()  # the engine finishes the create after all
    await settle()

    assert isinstance(await r.answer("a"), int)  # no name conflict: the container made is the one used
    made = [c for c in r.runtime.containers.values() if c.site == "a" and c.role == "site"]
    assert len(made) == 1 and r["a"].container_id == made[0].id
    assert r.runtime.calls.count(("create", "a")) == 2  # at startup, and this one: kept, not tried again


async def test_1_a_container_made_by_a_create_whose_answer_was_lost_is_taken(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    made = r["a"].container_id
    r.sup.lifecycle.container(r["a"], None)  # as if the create's answer never arrived

    assert isinstance(await r.answer("a"), int)
    assert r["a"].container_id == made and "replaced" not in r.events.kinds("a")  # its create met a conflict


async def test_1_a_drain_cancelled_half_way_gives_the_site_back(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await r.answer("a")
    assert isinstance(port, int)
    r.router.open[port] = 1
    drain = r.sup.drainer.begin(r["a"], Action.STOP, "idle")
    assert drain is not None
    await r.clock.advance(0.2)  # waiting for the open request
    drain.cancel()
    await settle()
    assert r["a"].state is SiteState.RUNNING and r.sup.work.drain(r["a"]) is None
    await r.clock.advance(0.2)
    assert r.routed_to("a") == port and r.runtime.of("a").status == "running"  # type: ignore[union-attr]


# -- 2. a failed drain leaves no stray stop behind ---------------------------------------------------------


async def test_2_a_failed_pause_keeps_the_site_and_stops_nothing(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await r.answer("a")
    r.runtime.fail("pause", EngineError("pause failed"), site="a")
    r.sup.drainer.begin(r["a"], Action.PAUSE, "idle")
    await r.clock.advance(1.0)
    assert r["a"].state is SiteState.RUNNING and r.routed_to("a") == port
    assert ("stop", "a") not in r.runtime.calls
    assert await r.answer("a") == port


async def test_2_a_failed_stop_does_not_stop_the_next_start(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await r.answer("a")
    stop = r.runtime.gate("stop", "a")
    r.runtime.fail("stop", EngineError("stop failed"), site="a")
    r.sup.drainer.begin(r["a"], Action.STOP, "idle")
    await r.clock.run_until(stop.reached.is_set)
    waiting = r.request("a")  # arrives while the stop is under way
    await settle()
    stop.release()  # ... and the stop fails
    await r.clock.run_until(waiting.done)
    assert waiting.result() == port
    await r.clock.advance(30.0)  # nothing left in the background stops it later
    assert r.runtime.of("a").status == "running"  # type: ignore[union-attr]
    assert r["a"].state is SiteState.RUNNING and r.routed_to("a") == port
    assert r.runtime.calls.count(("stop", "a")) == 1


# -- 3. a failed route change is retried until Caddy has it ------------------------------------------------


async def test_3_a_failed_route_change_is_retried_and_not_taken_as_done(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.router.fail("route")
    port = await r.answer("a")
    await settle()
    assert r.routed_to("a") is None  # the change failed ...
    assert not r.sup.routes.routed("a") and r.sup.routes.actual("a") is UNKNOWN  # ... and is not taken as done
    await r.clock.advance(0.5)  # the retry
    assert r.routed_to("a") == port and r.sup.routes.routed("a")


async def test_3_a_caddy_that_lost_its_config_gets_it_back(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"))
    port = await r.answer("a")
    await r.clock.advance(0.1)
    r.router.caddy.clear()  # restarted, with none of our routes
    await r.clock.advance(11.0)  # the next comparison with what Caddy has
    assert r.router.caddy == {"a": port, "b": None}


# -- 4. only the app's failures are crashes; a persistent site is never left down --------------------------


async def test_4_a_caddy_error_during_admission_is_no_crash(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("c"), budget=100 * MiB)
    assert isinstance(await r.answer("a"), int)
    r.router.fail("in_flight")
    assert isinstance(await r.answer("c"), StartFailed)
    assert r["c"].crashes.times == () and "crash" not in r.events.kinds("c")


async def test_4_engine_errors_never_make_a_site_failing(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.fail("start", StartFailed("a", "docker could not start it: the engine is busy"), site="a", times=6)
    for _ in range(6):
        answer = await r.answer("a")
        assert isinstance(answer, StartFailed) and not isinstance(answer, SiteFailing)
    assert r["a"].crashes.times == () and "crash" not in r.events.kinds("a")
    assert isinstance(await r.answer("a"), int)


async def test_4_a_persistent_site_whose_holder_will_not_come_back_is_tried_again(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT))
    await r.until("p", SiteState.RUNNING)
    # The holder dies, and for a while the engine will neither restart it nor make a new one.
    r.runtime.fail("start", StartFailed("p", "docker could not start it"), site="p", times=3)
    r.runtime.fail("create_holder", StartFailed("p", "docker could not create its holder"), site="p")
    r.runtime.stop_from_outside("p", role="holder")
    await r.clock.run_until(lambda: "holder_failed" in r.events.kinds("p"))
    assert r["p"].state is SiteState.STOPPED
    await r.until("p", SiteState.RUNNING, limit=10.0)  # by itself, once the engine obliges


# -- 5. evictions for the host at once; replayed events -----------------------------------------------------


class _Cgroups:
    def usage(self, container_id: str) -> int:
        return 60 * MiB


async def test_5_memory_critical_evicts_what_it_must_at_once(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"), site_config("c"))
    for name in "abc":
        assert isinstance(await r.answer(name), int)
        await r.clock.advance(1.0)  # a is the least recently used, then b
    thresholds = Thresholds(memory_warning=75, memory_critical=90)
    config = Config(path=Path("t.toml"), sites=r.config.sites, thresholds=thresholds)
    calm = HostReading(memory=70, cpu=1, load=0.1, storage=10, memory_total=1000 * MiB)
    monitor = Monitor(config, r.sup, r.runtime, _Cgroups(), read=lambda _: calm)  # type: ignore[arg-type]
    monitor.snapshot.memory_used.update(dict.fromkeys("abc", 60 * MiB))
    stops = {name: r.runtime.gate("stop", name) for name in "ab"}

    # 91 % of 1000 MiB: 160 MiB above the warning, so two sites of 60 MiB will not do, three will; c is busy.
    r.router.open[r["c"].host_port or 0] = 1
    relief = asyncio.ensure_future(monitor._relieve_memory(HostReading(91, 1, 0.1, 10, 1000 * MiB)))
    await r.clock.run_until(lambda: all(s.reached.is_set() for s in stops.values()))  # both stops at once
    for gate in stops.values():
        gate.release()
    await r.clock.run_until(relief.done)
    await asyncio.wait_for(relief, 5)
    assert [r[n].state for n in "abc"] == [SiteState.STOPPED, SiteState.STOPPED, SiteState.RUNNING]


async def test_5_a_replayed_death_does_not_stop_the_running_site(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    assert isinstance(await r.answer("a"), int)
    r.runtime.crash("a")
    await r.clock.advance(0.1)
    assert r["a"].state is SiteState.STOPPED
    since = len(r.runtime.events)
    port = await r.answer("a")  # started again
    assert isinstance(port, int)
    await r.clock.advance(0.1)
    # The event stream breaks and reconnects from the second of the crash: the engine sends it all again.
    died = next(e for e in r.runtime.events if e.action == "die" and e.role == "site")
    r.runtime.replay([died, *r.runtime.events[since:]])
    await r.clock.advance(0.1)
    assert r["a"].state is SiteState.RUNNING and r.routed_to("a") == port
    assert r.events.kinds("a").count("crash") == 1


def test_5_each_engine_event_is_taken_once() -> None:
    run = RunWatch()
    started = ContainerEvent("c1", "a", "start", time_ns=10)
    died = ContainerEvent("c1", "a", "die", 1, time_ns=20)
    assert run.observe(started) is None
    assert run.observe(died) == Exit(1)  # a death nobody watches: the caller's to handle
    assert run.observe(died) is None  # the same one again, replayed
    assert run.observe(ContainerEvent("c1", "a", "die", 1, time_ns=5)) is None  # older than the run's start


# -- 8. a stop from outside while the site starts -----------------------------------------------------------


async def test_8_a_stop_from_outside_during_the_start_is_no_crash_and_the_held_requests_get_the_site(
    rig: MakeRig,
) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(ready_after=1.0)
    held = [r.request("a") for _ in range(3)]
    await r.clock.advance(0.3)
    r.runtime.stop_from_outside("a")  # exits with 143 while it boots
    await r.clock.run_until(lambda: all(t.done() for t in held))
    ports = {t.result() for t in held}
    assert len(ports) == 1 and r["a"].state is SiteState.RUNNING
    assert r["a"].crashes.times == () and "crash" not in r.events.kinds("a")
    assert r.events.kinds("a").count("start") == 1 and "start_failed" not in r.events.kinds("a")
