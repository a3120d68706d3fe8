"""density: a synthetic day of traffic over 60 sites, replayed through the pure core (idle policy, budget).

The day is simulated, not slept through: 24 virtual hours run in a few seconds, with the reaper looking
every 5 virtual seconds. The costs of a cold start, a wake and a warm request are measured on the real
system in the same run (a short cold-start, wake and warm measurement) and charged to every request.

Traffic (seed 7): 60 sites, popularity Zipf(s = 1.1) over a day with a sinusoidal diurnal curve (peak at
15:00, trough a fifth of it at 03:00); each site's visits arrive as a Poisson process and each visit is a
burst of requests (geometric, mean 6) a few seconds apart. Site kinds: 30 static, 15 node, 10 astro, 5 next.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import statistics
import time
from dataclasses import dataclass

import aiohttp
import docker

from activator.core.budget import Resident, admit
from activator.core.policy import Action, IdleView, idle_action
from activator.model import Kind, MiB, Strategy
from bench.cold_start import through_activator
from bench.lifecycle import wake_once
from bench.report import Figure, Result, percentile
from tests.integration.harness import Deployment, site

SEED = 7
DAY = 24 * 3600.0
TICK = 5.0
BUDGET = int(2.1 * 1024 * MiB)
KINDS = [Kind.STATIC] * 30 + [Kind.NODE] * 15 + [Kind.ASTRO] * 10 + [Kind.NEXT] * 5
VISITS_PER_DAY = 6000  # over all sites


@dataclass(frozen=True)
class Policy:
    name: str
    pause_after: float | None
    idle_timeout: float | None
    budget: int | None  # None: no admission control


DEFAULT = Policy("pause 30 s, stop 5 min, 2.1 GiB budget", 30.0, 300.0, BUDGET)
KEEPALIVE = Policy("fixed 5-minute keep-alive", None, 300.0, None)


def traffic(seed: int = SEED) -> list[tuple[float, int]]:
    """(virtual time, site index) of every request of the day, in time order."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(KINDS))]
    rng.shuffle(weights)  # popularity does not follow kind
    total = sum(weights)
    requests = []
    for index, weight in enumerate(weights):
        visits_rate = VISITS_PER_DAY * weight / total / DAY  # mean visits per second
        t = 0.0
        while True:
            # Thinning: draw at the peak rate, keep with the diurnal factor (0.2 at 03:00 .. 1.0 at 15:00).
            t += rng.expovariate(visits_rate)
            if t >= DAY:
                break
            if rng.random() > 0.6 + 0.4 * math.cos(2 * math.pi * (t - 15 * 3600) / DAY):
                continue
            at = t
            for _ in range(1 + int(rng.expovariate(1 / 5))):
                requests.append((at, index))
                at += rng.expovariate(1 / 3)
    requests.sort()
    return requests


@dataclass
class _Site:
    memory: int
    state: str = "stopped"  # stopped | running | paused
    last: float = -1e9


def simulate(policy: Policy, requests: list[tuple[float, int]], costs: dict[str, float]) -> dict[str, float]:
    sites = [_Site(kind.defaults.memory) for kind in KINDS]
    latencies: list[float] = []
    cold = refused = 0
    held = peak = 0
    mem_seconds = 0.0
    now = 0.0
    ticks = [(t, -1) for t in _frange(TICK, DAY, TICK)]
    events = list(heapq.merge(requests, ticks))

    def advance(to: float) -> None:
        nonlocal now, mem_seconds
        mem_seconds += held * (to - now)
        now = to

    for at, index in events:
        advance(at)
        if index < 0:  # a reaper tick: the pure idle policy decides for every site
            for s in sites:
                view = IdleView(
                    Strategy.LAZY,
                    s.state == "running",
                    s.state == "paused",
                    0,
                    s.last,
                    policy.pause_after,
                    policy.idle_timeout,
                )
                action = idle_action(view, now)
                if action is Action.PAUSE:
                    s.state = "paused"
                elif action is Action.STOP:
                    s.state, held = "stopped", held - s.memory
            continue
        s = sites[index]
        if s.state == "running":
            latencies.append(costs["warm"])
        elif s.state == "paused":
            latencies.append(costs["wake"])
            s.state = "running"
        else:
            if policy.budget is not None:
                residents = [
                    Resident(str(i), o.memory, o.state == "paused", o.last, 0, False)
                    for i, o in enumerate(sites)
                    if o.state != "stopped"
                ]
                plan = admit(s.memory, policy.budget, residents)
                if plan is None:
                    refused += 1
                    continue
                for name in plan.evict:
                    victim = sites[int(name)]
                    victim.state, held = "stopped", held - victim.memory
            cold += 1
            latencies.append(costs["cold"])
            s.state, held = "running", held + s.memory
        s.last = now
        peak = max(peak, held)
    advance(DAY)
    return {
        "requests": len(requests),
        "cold starts per 1000 requests": 1000 * cold / len(requests),
        "refused": refused,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "peak memory MiB": peak / MiB,
        "mean memory MiB": mem_seconds / DAY / MiB,
        "memory GiB-hours": mem_seconds / (1024 * MiB) / 3600,
    }


def _frange(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((stop - start) / step) + 1)]


async def measure_costs(quick: bool) -> dict[str, float]:
    """Median cold start, wake and warm request through Caddy, in ms, on the real system now."""
    runs = 3 if quick else 10
    d = Deployment(
        docker.from_env(),
        [
            site("blog", "dialup-test-static:latest", idle_timeout="off"),
            site("nap", "dialup-test-static:latest", pause_after="1s", idle_timeout="off"),
        ],
        reaper_interval="100ms",
    )
    try:
        await d.start()
        async with aiohttp.ClientSession() as s:
            async with s.get(d.url, headers={"Host": "blog.test"}) as r:  # cold: started, then warm
                expected = await r.text()
            await d.wait_routed("blog")
            warm = []
            for _ in range(runs * 5):
                began = time.perf_counter()
                async with s.get(d.url, headers={"Host": "blog.test"}) as r:
                    await r.read()
                warm.append(time.perf_counter() - began)
            cold = [await through_activator(d, s, expected) for _ in range(runs)]
            async with s.get(d.url, headers={"Host": "nap.test"}) as r:
                await r.read()
            wake = [await wake_once(d, s) for _ in range(runs)]
    finally:
        await asyncio.to_thread(d.close)
    return {name: statistics.median(xs) * 1000 for name, xs in (("cold", cold), ("wake", wake), ("warm", warm))}


async def density(quick: bool) -> Result:
    costs = await measure_costs(quick)
    requests = traffic()
    ours, base = simulate(DEFAULT, requests, costs), simulate(KEEPALIVE, requests, costs)
    units = {
        "p50": "ms",
        "p95": "ms",
        "p99": "ms",
        "peak memory MiB": "MiB",
        "mean memory MiB": "MiB",
        "memory GiB-hours": "GiB-h",
        "cold starts per 1000 requests": "per 1000",
        "refused": "requests",
    }
    figures = [Figure(key, ours[key], unit, base[key], KEEPALIVE.name) for key, unit in units.items()]
    figures += [Figure(f"measured {k}", v, "ms") for k, v in costs.items()]
    return Result(
        "density",
        f"{int(ours['requests'])} requests, 60 sites, one simulated day: {DEFAULT.name} vs {KEEPALIVE.name}",
        figures,
        {
            DEFAULT.name: [ours["p50"], ours["p95"], ours["p99"]],
            KEEPALIVE.name: [base["p50"], base["p95"], base["p99"]],
        },
    )
