"""The token bucket on a fake clock: a burst at once, then the rate; what is refused says when to try again; the
allowed rate over a long run is the configured one."""

from __future__ import annotations

import pytest

from activator.core.ratelimit import Bucket, RateLimit, congestion_limit, detour


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [("10/s", 10.0, 10), ("600/m", 10.0, 10), ("1/m", 1 / 60, 1), ({"rate": "50/s", "burst": 100}, 50.0, 100)],
)
def test_parse(text: object, rate: float, burst: int) -> None:
    assert RateLimit.parse(text) == RateLimit(rate, burst)


@pytest.mark.parametrize("bad", ["10", "10/h", "0/s", "-1/s", {"rate": "10/s", "burst": 0}, {"burst": 5}, 10])
def test_parse_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(bad)


def test_a_burst_at_once_then_the_rate_and_retry_after() -> None:
    bucket = Bucket(RateLimit(10.0, 5))
    assert [bucket.take(0.0) for _ in range(5)] == [0.0] * 5  # the burst
    wait = bucket.take(0.0)
    assert wait == pytest.approx(0.1)  # one token comes every 0.1 s
    assert bucket.take(0.1) == 0.0


def test_over_a_long_run_the_allowed_rate_is_the_configured_one() -> None:
    bucket = Bucket(RateLimit(10.0, 20))
    allowed = sum(1 for i in range(60_000) if bucket.take(i * 0.001) == 0.0)  # 1,000 requests/s for 60 s
    assert allowed == pytest.approx(10 * 60 + 20, abs=1)  # the rate, plus the first burst


def test_below_the_rate_nothing_is_refused() -> None:
    bucket = Bucket(RateLimit(10.0, 1))
    assert all(bucket.take(i * 0.11) == 0.0 for i in range(1000))


def test_tightened_by_a_factor() -> None:
    assert RateLimit(10.0, 20).scaled(0.5) == RateLimit(5.0, 10)


@pytest.mark.parametrize(
    ("held", "recent", "settled", "wanted"),
    [
        (None, 4.9, 4.9, False),  # under the limit: Caddy serves it
        (None, 5.1, 2.0, True),  # above it over the last 2 s: through the activator
        (3.0, 0.0, 0.0, True),  # held for less than the release window: stays (it held the quiet before)
        (20.0, 9.0, 4.6, True),  # held: stays while the settled rate is above the limit less its margin (4.5)
        (20.0, 0.0, 4.4, False),  # ... and goes back below it
    ],
)
def test_the_route_moves_to_the_limiter_above_the_limit_and_back_below_it_less_its_margin(
    held: float | None, recent: float, settled: float, wanted: bool
) -> None:
    assert detour(held, recent, settled, RateLimit(5.0, 5)) is wanted


def test_congestion_halves_a_limit() -> None:
    assert congestion_limit(RateLimit(10.0, 20)) == RateLimit(5.0, 10)
    assert congestion_limit(RateLimit(1.0, 1)) == RateLimit(0.5, 1)  # a burst of one at least
