"""Drains, the reaper that asks for them, and Caddy's routes kept to what the supervisor wants."""

from __future__ import annotations

from activator.core.policy import Action
from activator.model import SiteState, Strategy
from activator.reaper import Reaper
from activator.supervisor.routes import UNKNOWN
from activator.testing.clock import settle
from activator.testing.rig import site_config
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import container, holder, holder_dies, running

# -- drains -------------------------------------------------------------------------------------------------


async def test_a_drain_waits_for_the_requests_open_through_caddy_then_stops(rig: MakeRig) -> None:
    r = await rig(site_config("a", drain_timeout=5.0))
    port = await running(r, "a")
    r.router.open[port] = 2
    began = r.clock.monotonic()

    drain = r.sup.drainer.begin(r["a"], Action.STOP, "idle")
    assert drain is not None
    await r.clock.advance(1.0)
    assert r["a"].state is SiteState.DRAINING and r.routed_to("a") is None  # new requests come to us
    assert ("stop", "a") not in r.runtime.calls
    r.router.open[port] = 0  # the last ones end
    await r.until("a", SiteState.STOPPED)

    assert 1.0 <= r.clock.monotonic() - began < 1.5
    assert r.runtime.calls.count(("stop", "a")) == 1 and container(r, "a").status == "exited"
    assert r.events.kinds("a")[-1] == "stopped" and r.routed_to("a") is None


async def test_a_drain_stops_the_site_after_drain_timeout_even_with_requests_still_open(rig: MakeRig) -> None:
    r = await rig(site_config("a", drain_timeout=5.0))
    port = await running(r, "a")
    r.router.open[port] = 1  # a WebSocket that never closes
    began = r.clock.monotonic()

    assert r.sup.drainer.begin(r["a"], Action.STOP, "idle") is not None
    await r.clock.advance(4.9)
    assert r["a"].state is SiteState.DRAINING and ("stop", "a") not in r.runtime.calls
    await r.until("a", SiteState.STOPPED)

    assert 5.0 <= r.clock.monotonic() - began < 5.5
    assert container(r, "a").status == "exited"


async def test_a_request_arriving_during_a_drain_keeps_the_site(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    r.router.open[port] = 1
    drain = r.sup.drainer.begin(r["a"], Action.STOP, "idle")
    assert drain is not None
    await r.clock.run_until(lambda: r.routed_to("a") is None)

    assert await r.answer("a") == port

    assert drain.done() and drain.result() is False
    assert r["a"].state is SiteState.RUNNING and ("stop", "a") not in r.runtime.calls
    await r.clock.run_until(lambda: r.routed_to("a") == port)
    assert container(r, "a").status == "running" and "stopped" not in r.events.kinds("a")


async def test_a_drain_whose_route_change_cannot_be_applied_keeps_the_site(rig: MakeRig) -> None:
    r = await rig(site_config("a", drain_timeout=5.0))
    port = await running(r, "a")
    r.router.fail("route", 100)
    began = r.clock.monotonic()

    drain = r.sup.drainer.begin(r["a"], Action.STOP, "idle")
    assert drain is not None
    await r.clock.run_until(drain.done)

    assert drain.result() is False and r.clock.monotonic() - began >= 5.0
    assert r["a"].state is SiteState.RUNNING and ("stop", "a") not in r.runtime.calls
    assert r.routed_to("a") == port and r.sup.routes.wanted("a") == port  # Caddy never left the container
    assert await r.answer("a") == port


# -- the reaper ---------------------------------------------------------------------------------------------


async def test_the_reaper_pauses_an_idle_site_then_stops_it(rig: MakeRig) -> None:
    r = await rig(site_config("a", pause_after=10.0, idle_timeout=30.0))
    reaper = Reaper(r.sup, interval=1.0)
    await running(r, "a")
    up = r.clock.monotonic()

    await r.clock.advance(up + 9.0 - r.clock.monotonic())
    await reaper.tick()
    await settle()
    assert r["a"].state is SiteState.RUNNING  # not idle long enough yet
    await r.clock.advance(1.0)
    await reaper.tick()
    await r.until("a", SiteState.PAUSED)
    assert container(r, "a").status == "paused" and r.events.kinds("a")[-1] == "paused"

    await r.clock.advance(up + 30.0 - r.clock.monotonic())
    await reaper.tick()
    await r.until("a", SiteState.STOPPED)
    assert container(r, "a").status == "exited" and r.events.kinds("a")[-1] == "stopped"


async def test_the_reaper_leaves_a_site_with_a_request_open(rig: MakeRig) -> None:
    r = await rig(site_config("a", pause_after=10.0, idle_timeout=30.0))
    reaper = Reaper(r.sup, interval=1.0)
    port = await running(r, "a")
    r.router.open[port] = 1  # a long download, say: no new request for a while

    await r.clock.advance(31.0)
    await reaper.tick()
    await settle()

    assert r["a"].state is SiteState.RUNNING and r.routed_to("a") == port
    assert not {("pause", "a"), ("stop", "a")} & set(r.runtime.calls)


async def test_the_reaper_never_pauses_or_stops_a_persistent_site(rig: MakeRig) -> None:
    r = await rig(site_config("p", strategy=Strategy.PERSISTENT, pause_after=10.0, idle_timeout=30.0))
    reaper = Reaper(r.sup, interval=1.0)
    await r.until("p", SiteState.RUNNING)

    for _ in range(4):
        await r.clock.advance(30.0)
        await reaper.tick()
        await settle()

    assert r["p"].state is SiteState.RUNNING and container(r, "p").status == "running"
    assert not {("pause", "p"), ("stop", "p")} & set(r.runtime.calls)


# -- routes -------------------------------------------------------------------------------------------------


async def test_a_failed_route_change_is_retried_with_backoff_until_caddy_has_it(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.router.fail("route", 3)
    port = await r.answer("a")
    assert isinstance(port, int)
    began = r.clock.monotonic()
    await settle()
    assert r.routed_to("a") is None and r.sup.routes.actual("a") is UNKNOWN

    await r.clock.run_until(lambda: r.routed_to("a") == port)

    # Tried at once, then after 0.1, 0.2 and 0.4 s: the fourth try is the one that goes through.
    assert 0.7 <= r.clock.monotonic() - began < 0.8
    assert r.sup.routes.routed("a") and r.router.changes.count(("a", port)) == 1


async def test_verify_puts_right_a_route_changed_behind_our_back(rig: MakeRig) -> None:
    r = await rig(site_config("a"), site_config("b"))
    port = await running(r, "a")
    r.router.caddy["a"] = 55555  # someone edited Caddy's config
    r.router.caddy["b"] = 55556

    await r.sup.routes.verify()
    await settle()

    assert r.routed_to("a") == port and r.routed_to("b") is None
    assert r.sup.routes.routed("a") and r.sup.routes.settled("b")


# -- deaths during a drain that a request then keeps ----------------------------------------------------------


async def test_a_container_that_dies_while_draining_is_not_kept_for_the_next_request(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["a"], Action.STOP, "idle") is not None
    await r.clock.advance(0.2)
    r.runtime.crash("a")
    await settle()
    assert r["a"].state is SiteState.DRAINING

    assert await r.answer("a") == port

    assert container(r, "a").status == "running"  # the port it was given is a live container


async def test_a_drain_kept_after_the_holder_died_does_not_route_caddy_to_the_dead_port(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    port = await running(r, "a")
    r.router.open[port] = 1
    assert r.sup.drainer.begin(r["a"], Action.STOP, "idle") is not None
    await r.clock.run_until(lambda: r.routed_to("a") is None)
    changes = len(r.router.changes)
    await holder_dies(r, "a")

    new = await r.answer("a")

    assert new == holder(r, "a").host_port != port  # the request gets the site in the new holder ...
    await r.clock.run_until(lambda: r.routed_to("a") == new)
    assert r.router.changes[changes:] == [("a", new)]  # ... and Caddy never goes back to the dead port
