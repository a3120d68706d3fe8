"""History rollups on known traffic and a fake clock: per-minute and per-hour figures exact, and bounded."""

from __future__ import annotations

import random

import pytest

from activator.core.history import HOUR, LATENCY_BOUNDS_MS, MINUTE, Minutes, Point, Retention, roll_up

T0 = 1_800_000_000 - 1_800_000_000 % HOUR  # an hour's start


def traffic(seed: int = 1) -> list[tuple[str, float, int, float]]:
    """An hour of known requests for two sites: (site, ts, status, ms)."""
    rng = random.Random(seed)
    out = []
    for minute in range(60):
        for site, per_minute in (("blog", 12), ("api", 40)):
            for _ in range(per_minute + minute % 5):
                out.append(
                    (
                        site,
                        T0 + minute * MINUTE + rng.random() * MINUTE,
                        500 if rng.random() < 0.05 else 200,
                        rng.choice([3.0, 7.0, 30.0, 80.0, 400.0, 3000.0]),
                    )
                )
    return out


def test_each_minute_counts_its_requests_errors_and_response_times_exactly() -> None:
    requests = traffic()
    minutes = Minutes()
    for site, ts, status, ms in requests:
        minutes.request(site, ts, status, ms)
    points = minutes.take(T0 + HOUR)
    assert len(points) == 120 and minutes.take(T0 + 2 * HOUR) == []
    for p in points:
        mine = [(s, ms) for site, ts, s, ms in requests if site == p.site and p.start <= ts < p.start + MINUTE]
        assert p.requests == len(mine) and p.errors == sum(1 for s, _ in mine if s >= 500)
        assert sum(p.latency) == len(mine)


def test_a_minute_is_handed_over_only_once_it_is_over() -> None:
    minutes = Minutes()
    minutes.request("blog", T0 + 30, 200, 5)
    assert minutes.take(T0 + 59.9) == []
    (point,) = minutes.take(T0 + 60)
    assert (point.site, point.start, point.seconds, point.requests) == ("blog", T0, MINUTE, 1)


def test_an_hour_rolled_up_from_its_minutes_is_the_hour_counted_directly() -> None:
    requests = traffic(2)
    minutes, direct = Minutes(), {}
    for site, ts, status, ms in requests:
        minutes.request(site, ts, status, ms)
    for site in ("blog", "api"):
        mine = [(s, ms) for name, _, s, ms in requests if name == site]
        direct[site] = (len(mine), sum(1 for s, _ in mine if s >= 500), sorted(ms for _, ms in mine))
    for minute in range(60):  # memory readings every minute, and one cold start a quarter hour
        minutes.memory("blog", T0 + minute * MINUTE + 1, (20 + minute % 7) << 20, 64 << 20)
        minutes.state("blog", T0 + minute * MINUTE + 2, 60.0, failing=minute == 13)
        if minute % 15 == 0:
            minutes.cold_start("blog", T0 + minute * MINUTE + 3, 250.0)
    hours = roll_up(minutes.take(T0 + HOUR))
    by_site = {p.site: p for p in hours}
    assert [p.seconds for p in hours] == [HOUR, HOUR] and {p.start for p in hours} == {T0}
    for site, (count, errors, times) in direct.items():
        hour = by_site[site]
        assert (hour.requests, hour.errors) == (count, errors)
        for q in (0.5, 0.95, 0.99):  # the bucket the q-th request falls in
            exact = times[max(0, int(q * count + 0.999999) - 1)]
            bound = next((b for b in LATENCY_BOUNDS_MS if exact <= b), float("inf"))
            assert hour.percentile(q) == bound, (site, q)
    blog = by_site["blog"]
    assert blog.memory_peak == 26 << 20 and blog.readings == 60 and blog.memory_limit == 64 << 20
    assert blog.uptime == pytest.approx(59 / 60)
    assert (blog.cold_starts, blog.cold_start_ms) == (4, 1000.0)


def test_hours_roll_up_from_points_of_any_size_and_sites_stay_apart() -> None:
    points = [Point("a", T0 + i * MINUTE, MINUTE, requests=1) for i in range(120)]
    points += [Point("b", T0 + 5 * MINUTE, MINUTE, requests=7)]
    hours = roll_up(points)
    assert [(p.site, p.start, p.requests) for p in hours] == [("a", T0, 60), ("b", T0, 7), ("a", T0 + HOUR, 60)]
    assert roll_up(hours, HOUR) == hours  # rolling an hour up again changes nothing


def test_retention_cuts_at_whole_hours() -> None:
    keep = Retention()
    minutes_cut, hours_cut = keep.cutoffs(T0 + 30 * HOUR + 1234)
    assert minutes_cut == T0 + 6 * HOUR and minutes_cut % HOUR == 0
    assert hours_cut == T0 + 30 * HOUR + 1234 - 90 * 24 * HOUR
