"""Replayed engine events: a reconnect from a whole second delivers that second's events again."""

from __future__ import annotations

import pytest

from activator.model import ContainerEvent
from activator.runtime.events import NS, Replays

T0 = 1_700_000_000 * NS  # a whole second


def ev(container: str, action: str, time_ns: int) -> ContainerEvent:
    return ContainerEvent(container_id=container, site="blog", action=action, time_ns=time_ns)


def test_an_event_is_new_once_then_a_replay() -> None:
    replays = Replays()
    first = ev("c1", "die", T0 + 5)
    assert replays.seen(first) is False
    assert replays.seen(first) is True
    assert replays.seen(ev("c1", "die", T0 + 5)) is True  # an equal event parsed again from the stream


@pytest.mark.parametrize(
    "other",
    [
        ev("c2", "die", T0 + 5),  # another container
        ev("c1", "start", T0 + 5),  # another action
        ev("c1", "die", T0 + 6),  # another moment: the same action again, one nanosecond later
    ],
)
def test_events_that_differ_in_any_part_of_the_key_are_new(other: ContainerEvent) -> None:
    replays = Replays()
    assert replays.seen(ev("c1", "die", T0 + 5)) is False
    assert replays.seen(other) is False


def test_a_reconnect_replays_the_last_second_and_only_the_new_events_pass() -> None:
    replays = Replays()
    before = [ev("c1", "start", T0 - NS // 2), ev("c1", "die", T0 + 100), ev("c2", "start", T0 + 900_000_000)]
    assert [replays.seen(e) for e in before] == [False, False, False]
    # The stream broke; the watcher asks again from the last event's whole second, T0.
    again = [before[1], before[2], ev("c2", "die", T0 + 950_000_000), ev("c1", "start", T0 + NS + 1)]
    assert [replays.seen(e) for e in again] == [True, True, False, False]


def test_events_without_a_time_are_always_delivered() -> None:
    # An engine that sends no timeNano: nothing tells a replay from a new event, and a repeat beats a loss.
    replays = Replays()
    assert [replays.seen(ev("c1", "die", 0)) for _ in range(3)] == [False, False, False]
    assert len(replays) == 0


def test_keys_older_than_the_window_before_the_newest_second_are_forgotten() -> None:
    replays = Replays(window=1.0)
    for i in range(10_000):  # ten thousand events over 100 s
        replays.seen(ev(f"c{i}", "start", T0 + i * (NS // 100)))
    # The newest event is in second T0 + 99: kept are the events from T0 + 98 on, 200 of them.
    assert len(replays) == 200
    assert replays.seen(ev("c9800", "start", T0 + 9800 * (NS // 100))) is True
    # One forgotten: it could not be replayed by a reconnect, which asks from T0 + 99 s.
    assert replays.seen(ev("c9799", "start", T0 + 9799 * (NS // 100))) is False


def test_an_event_slightly_out_of_order_is_still_recognised() -> None:
    replays = Replays(window=1.0)
    late = ev("c1", "die", T0 + NS - 1)
    assert replays.seen(ev("c2", "start", T0 + NS + 1)) is False
    assert replays.seen(late) is False
    assert replays.seen(late) is True
