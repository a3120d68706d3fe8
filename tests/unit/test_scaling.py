"""Scaling decisions on a fake clock: up on the stable window's rate or a panic, down only after the delay, never
while panicking; a rate oscillating around the threshold does not oscillate the instances."""

from __future__ import annotations

import itertools

import pytest

from activator.core.scaling import STABLE_WINDOW, ScalePolicy, ScaleState, decide

POLICY = ScalePolicy(threshold=50, scale_down_delay=300)


@pytest.mark.parametrize(
    ("instances", "stable", "panic", "wanted"),
    [
        (1, 40, 40, 1),  # under the threshold
        (1, 51, 51, 2),  # the stable window passes it
        (1, 10, 100, 2),  # a burst: the panic window passes twice the threshold
        (1, 10, 99, 1),  # ... but not quite
        (2, 120, 300, 2),  # at the maximum
        (2, 60, 60, 2),  # two are needed (60 > 50 for one)
    ],
)
def test_up(instances: int, stable: float, panic: float, wanted: int) -> None:
    assert decide(POLICY, ScaleState(instances), stable, panic, 1000.0).state.instances == wanted


ONE = ScaleState(1)


def run(rates: list[tuple[float, float]], start: ScaleState = ONE, step: float = 10.0) -> list[int]:
    """Instances after each tick, `step` seconds apart, fed (stable, panic) rates."""
    state, now, seen = start, 0.0, []
    for stable, panic in rates:
        state = decide(POLICY, state, stable, panic, now).state
        seen.append(state.instances)
        now += step
    return seen


def test_down_only_after_the_delay_below_the_threshold() -> None:
    seen = run([(20, 20)] * 40, ScaleState(2))
    assert seen[:30] == [2] * 30 and seen[30:] == [1] * 10  # 300 s below: one instance


def test_a_rate_oscillating_around_the_threshold_does_not_oscillate_the_instances() -> None:
    # 45, 55, 45, 55 ... requests/min: up once, then never down (it is never 300 s below what one carries).
    seen = run([(45, 45), (55, 55)] * 60)
    assert seen[0] == 1 and set(seen[1:]) == {2}
    changes = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    assert changes == 1


def test_down_only_below_what_fewer_carry_less_the_margin() -> None:
    # 47 a minute: below the 50 one instance carries, not below 45 (50 less 10 %): two stay, however long.
    assert set(run([(47, 47)] * 100, ScaleState(2))) == {2}
    assert run([(44, 44)] * 40, ScaleState(2))[-1] == 1


def test_never_down_while_panicking() -> None:
    state = decide(POLICY, ScaleState(1), 10, 150, 0.0).state  # a burst: up
    assert state.instances == 2
    # The stable rate is low, but a panic holds for a stable window after its last trigger.
    later = decide(POLICY, state, 10, 10, STABLE_WINDOW - 1).state
    assert later.instances == 2 and later.below_since is None
    # Then the delay counts from the end of the panic.
    t = STABLE_WINDOW
    state = later
    while state.instances == 2:
        state = decide(POLICY, state, 10, 10, t).state
        t += 1
    assert t - 1 == STABLE_WINDOW + POLICY.scale_down_delay


def test_each_change_says_why() -> None:
    up = decide(POLICY, ScaleState(1), 80, 80, 0.0)
    assert up.reason == "up to 2: stable window: 80 requests/min"
    burst = decide(POLICY, ScaleState(1), 20, 130, 0.0)
    assert burst.reason == "up to 2: panic window: 130 requests/min"
    assert decide(POLICY, ScaleState(1), 20, 20, 0.0).reason == ""
