"""Scalable sites and rate limits through the real Supervisor on the fakes and virtual time: the second instance
started by the rate, in the site's route, refused by the budget, drained before it stops, renewed after a deploy,
never stopped for idleness; a site over its rate limit held on the activator and answered 429 there."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from activator.config import Config, Thresholds, replica_site
from activator.core.ratelimit import RateLimit
from activator.errors import RateLimited
from activator.model import Kind, SiteState, Strategy
from activator.monitor import HostReading, Monitor
from activator.reaper import Reaper
from activator.supervisor.scaler import RETRY_AFTER_REFUSAL
from activator.testing.rig import MiB, Rig, site_config
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import container, running

API = site_config("api", strategy=Strategy.SCALABLE, scale_threshold=30.0, scale_window=10.0, scale_down_delay=2.0)
SITES = (API, replica_site(API))


async def ticks(r: Rig, seconds: float, per_second: int = 0, site: str = "api") -> None:
    """`seconds` reaper ticks (the limiter's, the scaler's), each after a second with `per_second` requests for
    the site, read from Caddy's metrics at the tick as the reaper does."""
    for _ in range(int(seconds)):
        await r.clock.advance(1.0)
        if per_second:
            r.sup.activity.on_requests(site, per_second)
        r.sup.limiter.tick()
        r.sup.scaler.tick()


def kinds(r: Rig, site: str = "api") -> list[str]:
    return [row.kind for row in r.events.rows if row.site == site]


async def test_a_scalable_site_starts_with_dialup_and_its_second_instance_with_its_rate(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    assert r["api.2"].state is SiteState.STOPPED
    port = r["api"].host_port
    assert r.routed_to("api.2") == port  # the second upstream is the first instance while it is alone

    await ticks(r, 1, per_second=10)  # 100 a minute in the 6 s panic window: twice 30, at once
    await r.until("api.2", SiteState.RUNNING)
    await r.clock.run_until(lambda: r.routed_to("api.2") == r["api.2"].host_port)
    assert r["api.2"].host_port != port and r.routed_to("api") == port
    await r.clock.run_until(lambda: "scaled_up" in kinds(r))
    assert r.sup.scaler.instances(r["api"]) == 2

    await ticks(r, 30)  # no requests: a stable window, and the delay, later
    await r.until("api.2", SiteState.STOPPED)
    assert r.routed_to("api.2") == port and r["api"].state is SiteState.RUNNING
    assert kinds(r).count("scaled_up") == 1 and kinds(r).count("scaled_down") == 1
    assert "evicted" not in kinds(r, "api.2")


async def test_a_scalable_site_is_started_again_after_a_crash(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    r.runtime.crash("api")
    await r.clock.advance(0.1)
    assert r["api"].state is SiteState.STOPPED
    await r.until("api", SiteState.RUNNING)  # by the keeper, after its backoff: no request needed


async def test_a_rate_that_wavers_around_the_threshold_does_not_waver_the_instances(rig: MakeRig) -> None:
    slow = replace(API, scale_down_delay=60.0)
    r = await rig(slow, replica_site(slow))
    await r.until("api", SiteState.RUNNING)
    for block in range(60):  # bursts of 60 a minute and pauses, 5 s each: 40 a minute on average, 5 minutes
        await ticks(r, 5, per_second=1 if block % 3 else 0)
    assert kinds(r).count("scaled_up") == 1 and kinds(r).count("scaled_down") == 0
    for second in range(120):  # 15 a minute, 2 minutes: below what one instance carries, less its margin
        await ticks(r, 1, per_second=1 if second % 4 == 0 else 0)
    assert kinds(r).count("scaled_up") == 1 and kinds(r).count("scaled_down") == 1


async def test_a_scale_up_that_does_not_fit_is_refused_and_tried_again_later(rig: MakeRig) -> None:
    r = await rig(*SITES, budget=64 * MiB + 2 * MiB)  # the site and two holders: no room for a second instance
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 3, per_second=3)
    await r.clock.run_until(lambda: "scale_refused" in kinds(r))
    assert r["api"].state is SiteState.RUNNING and r["api.2"].state is SiteState.STOPPED
    assert isinstance(await r.answer("api"), int)  # it serves on one
    await ticks(r, 20, per_second=3)
    assert kinds(r).count("scale_refused") == 1  # not tried again before RETRY_AFTER_REFUSAL
    await ticks(r, 15, per_second=3)
    assert kinds(r).count("scale_refused") == 2


async def test_a_request_goes_to_the_instance_with_fewer_open(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    hold = asyncio.Event()
    first = r.request("api", hold)
    await r.clock.advance(0.01)
    second = r.request("api", hold)
    await r.clock.advance(0.01)
    hold.set()
    await r.clock.run_until(lambda: first.done() and second.done())
    assert {first.result(), second.result()} == {r["api"].host_port, r["api.2"].host_port}


async def test_the_second_instance_is_drained_before_it_stops(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    replica_port = r["api.2"].host_port
    assert replica_port is not None
    r.router.open[replica_port] = 1  # a request open through Caddy to the second instance
    for _ in range(30):
        if r["api.2"].state is SiteState.DRAINING:
            break
        await ticks(r, 1)
    assert r["api.2"].state is SiteState.DRAINING
    await r.clock.advance(API.drain_timeout / 2)
    assert r.routed_to("api.2") == r["api"].host_port  # no new request reaches it meanwhile
    assert ("stop", "api.2") not in r.runtime.calls
    r.router.open[replica_port] = 0
    await r.until("api.2", SiteState.STOPPED)


async def test_a_deploy_renews_the_second_instance_with_the_new_release(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    await r.sup.swapper.swap(r["api"], lambda c: replace(c, image="api:2"), "deploy")
    assert r["api"].config.run_image == "api:2"
    for _ in range(10):
        await ticks(r, 1, per_second=10)
    await r.clock.run_until(lambda: r["api.2"].state is SiteState.RUNNING and r["api.2"].config.image == "api:2")
    assert r.runtime.of("api.2") is not None and r.runtime.of("api.2").image == "api:2"  # type: ignore[union-attr]


async def test_the_reaper_never_stops_a_second_instance_for_idleness(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    reaper = Reaper(r.sup, 1.0)
    lazy = replace(r["api.2"].config, idle_timeout=1.0)
    r.sup.lifecycle.configured(r["api.2"], lazy, "test")
    for _ in range(5):
        await reaper.tick()
        await r.clock.advance(1.0)
        r.sup.activity.on_requests("api", 3)  # busy enough to keep two
    assert r["api.2"].state is SiteState.RUNNING


async def test_a_deploy_of_the_site_waits_for_what_its_second_route_file_sent_the_old_container(
    rig: MakeRig,
) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    old_port, old = r["api"].host_port, container(r, "api")
    assert old_port is not None and r.routed_to("api.2") == old_port
    r.router.open[old_port] = 1  # open through the second file (Caddy counts it there), on the old container
    swap = asyncio.ensure_future(r.sup.swapper.swap(r["api"], lambda c: replace(c, image="api:2"), "deploy"))
    await r.clock.run_until(lambda: r["api"].host_port not in (None, old_port))
    await r.clock.advance(API.drain_timeout / 2)
    assert old.status == "running"  # the request through the second file is still open on it
    r.router.open[old_port] = 0
    await r.clock.run_until(swap.done)
    await r.clock.run_until(lambda: old.status != "running")


async def test_while_only_the_second_instance_serves_the_site_is_routed_and_answered_there(rig: MakeRig) -> None:
    slow = replace(API, restart_backoff=30.0)
    r = await rig(slow, replica_site(slow))
    await r.until("api", SiteState.RUNNING)
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    second = r["api.2"].host_port
    r.runtime.crash("api")
    await r.clock.advance(0.1)
    assert r["api"].state is SiteState.STOPPED
    await r.clock.run_until(lambda: r.routed_to("api") == second and r.routed_to("api.2") == second)
    assert await r.answer("api", limit=1.0) == second  # not held for the first one's restart


async def test_a_second_instance_that_keeps_crashing_waits_out_its_backoff(rig: MakeRig) -> None:
    r = await rig(*SITES)
    await r.until("api", SiteState.RUNNING)
    starts = []
    for _ in range(100):
        await ticks(r, 1, per_second=10)
        if r["api.2"].state is SiteState.RUNNING:
            starts.append(r.clock.monotonic())
            r.runtime.crash("api.2")
            await r.clock.advance(0.1)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) >= 3 and all(gap >= RETRY_AFTER_REFUSAL for gap in gaps), gaps


async def test_a_scale_up_evicts_an_idle_site_and_once_evicted_is_not_tried_again_at_once(rig: MakeRig) -> None:
    other = site_config("other")
    r = await rig(*SITES, other, budget=2 * 64 * MiB + 3 * MiB)  # the site, one more, and the three holders
    await r.until("api", SiteState.RUNNING)
    await running(r, "other")
    await r.clock.advance(5.0)  # other is idle now
    await ticks(r, 1, per_second=10)
    await r.until("api.2", SiteState.RUNNING)
    assert r["other"].state is SiteState.STOPPED  # evicted to make room for the second instance
    assert isinstance(await r.answer("other"), int)  # which in turn is evicted for other's start
    assert r["api.2"].state is SiteState.STOPPED
    await ticks(r, 10, per_second=10)
    assert r["api.2"].state is SiteState.STOPPED and r["other"].state is SiteState.RUNNING  # no ping-pong


# -- rate limits -----------------------------------------------------------------------------------


LIMITED = site_config("lim", rate_limit=RateLimit(5.0, 5))


async def test_over_its_limit_a_site_is_held_on_the_activator_and_back_under_it(rig: MakeRig) -> None:
    r = await rig(LIMITED)
    port = await running(r, "lim")
    await ticks(r, 5, per_second=4, site="lim")  # under 5 a second
    assert r.routed_to("lim") == port and not r.sup.routes.held("lim")
    await ticks(r, 2, per_second=10, site="lim")  # a flood, after a quiet start
    await r.clock.run_until(lambda: r.routed_to("lim") is None)
    assert r["lim"].state is SiteState.RUNNING  # the activator forwards what the bucket lets through
    assert isinstance(await r.answer("lim"), int)
    held = []
    for _ in range(20):  # the flood goes on: the quiet seconds before it in the release window change nothing
        await ticks(r, 1, per_second=10, site="lim")
        held.append(r.sup.routes.held("lim"))
    assert all(held)
    await ticks(r, 15, per_second=4, site="lim")  # 4 a second: under 5 less its margin (4.5)
    await r.clock.run_until(lambda: r.routed_to("lim") == port)
    assert [k for k in kinds(r, "lim") if k.startswith("rate")] == ["rate_limited", "rate_limit_lifted"]


async def test_a_rate_read_early_in_a_second_is_not_undercounted(rig: MakeRig) -> None:
    r = await rig(LIMITED)
    await running(r, "lim")
    t0 = r.clock.monotonic() // 1.0 + 1.05  # the reaper's ticks come 0.05 s into each second
    requests = [(t0 + i / 7.5, "request") for i in range(30)]  # 7.5 a second, evenly: above 5
    moments = sorted(requests + [(t0 + j, "tick") for j in range(1, 5)])
    for at, what in moments:
        await r.clock.advance(at - r.clock.monotonic())
        if what == "request":  # from the access log, stamped when it was made
            r.sup.activity.on_request("lim", r.clock.wall())
        else:
            r.sup.limiter.tick()
    assert r.sup.routes.held("lim")


async def test_counts_read_from_caddys_metrics_each_tick_are_not_overcounted(rig: MakeRig) -> None:
    limited = site_config("lim", rate_limit=RateLimit(20.0, 20))
    r = await rig(limited)
    await running(r, "lim")
    await r.clock.advance(1.0 - r.clock.monotonic() % 1.0 + 0.3)  # the reaper's ticks, 0.3 s into each second
    for _ in range(15):
        r.sup.activity.on_requests("lim", 16)  # the reaper's read: the second before's 16 requests, made now
        r.sup.limiter.tick()
        assert not r.sup.routes.held("lim")  # 16 a second is under 20 however it is read
        await r.clock.advance(1.0)


async def test_a_site_held_on_the_activator_is_given_back_to_its_container_at_shutdown(rig: MakeRig) -> None:
    r = await rig(LIMITED)
    port = await running(r, "lim")
    await ticks(r, 2, per_second=20, site="lim")
    await r.clock.run_until(lambda: r.routed_to("lim") is None)
    await r.sup.close()
    assert r.routed_to("lim") == port  # Caddy serves it while the activator is gone


async def test_the_bucket_lets_its_burst_through_then_says_when_to_come_back(rig: MakeRig) -> None:
    r = await rig(LIMITED)
    for _ in range(5):
        r.sup.admit(r["lim"])
    with pytest.raises(RateLimited) as refused:
        r.sup.admit(r["lim"])
    assert refused.value.retry_after == pytest.approx(0.2)
    assert r.sup.limiter.refused["lim"] == 1
    await r.clock.advance(0.2)
    r.sup.admit(r["lim"])


async def test_congestion_tightens_the_limits_of_sites_that_are_not_persistent(rig: MakeRig) -> None:
    kept = site_config("kept", strategy=Strategy.PERSISTENT, rate_limit=RateLimit(5.0, 5))
    free = site_config("free", kind=Kind.NODE)
    r = await rig(LIMITED, kept, free, *SITES)
    limiter = r.sup.limiter
    assert limiter.congestion(True, "cpu 95%") == ["lim"]
    assert limiter.limit(r["api"]) is None  # scalable, without a limit of its own: its second instance answers
    assert limiter.limit(r["lim"]) == RateLimit(2.5, 2)
    assert limiter.limit(r["kept"]) == RateLimit(5.0, 5)
    assert limiter.limit(r["free"]) is None  # no limit of its own: none (a cold start's burst is never refused)
    limiter.congestion(False, "cpu 60%")
    assert limiter.limit(r["lim"]) == RateLimit(5.0, 5) and limiter.limit(r["free"]) is None
    await r.clock.run_until(lambda: "limits_restored" in kinds(r, "(host)"))
    assert kinds(r, "(host)") == ["limits_tightened", "limits_restored"]


class _Cgroups:
    def usage(self, container_id: str) -> int:
        return 10 * MiB


async def test_the_monitor_tightens_limits_on_sustained_congestion_and_restores_them_once_both_are_ok(
    rig: MakeRig,
) -> None:
    r = await rig(LIMITED)
    readings = iter(
        [(95, 0.5)] * 3  # CPU above 80 for `sustained` (3) ticks: congested
        + [(75, 0.5)] * 2  # under 80 but not under 72 (80 less its margin): still congested
        + [(70, 2.0)] * 3  # CPU ok, but the load above 1.5 ...
        + [(70, 1.2)]  # ... and back under it less its margin (1.35): both ok
    )

    def read(_: Path) -> HostReading:
        cpu, load = next(readings)
        return HostReading(memory=10, cpu=cpu, load=load, storage=10, memory_total=1000 * MiB)

    config = Config(path=Path("t.toml"), sites=r.config.sites, thresholds=Thresholds(sustained=3))
    monitor = Monitor(config, r.sup, r.runtime, _Cgroups(), read=read)  # type: ignore[arg-type]
    seen = []
    for _ in range(9):
        await monitor.tick()
        seen.append(r.sup.limiter.congested)
    assert seen == [False, False, True, True, True, True, True, True, False]
    assert r.sup.limiter.limit(r["lim"]) == RateLimit(5.0, 5)
    await r.clock.run_until(lambda: "limits_restored" in kinds(r, "(host)"))
    assert kinds(r, "(host)").count("limits_tightened") == 1
