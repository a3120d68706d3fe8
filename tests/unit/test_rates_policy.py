"""Rates and policies, driven by tables and a fake clock (time is an argument)."""

from __future__ import annotations

import pytest

from activator.core.policy import Action, Backoff, CrashRecord, IdleView, idle_action
from activator.core.rates import Rates
from activator.model import Strategy


def test_rates_over_sliding_windows() -> None:
    rates = Rates()
    for t in range(0, 120):  # one request a second for two minutes
        rates.record("blog", 1000.0 + t)
    now = 1000.0 + 119.5
    assert rates.count("blog", now, 60) == 60
    assert rates.per_minute("blog", now) == 60.0
    assert rates.per_minute("blog", now, window=300) == pytest.approx(120 * 60 / 300)
    assert rates.last_request("blog") == 1119.0
    # Five minutes later everything has slid out of every window, but the last request is remembered.
    assert rates.count("blog", now + 301, 300) == 0
    assert rates.last_request("blog") == 1119.0
    assert rates.count("other", now, 60) == 0 and rates.last_request("other") is None


def test_late_log_lines_count_in_their_own_second() -> None:
    rates = Rates()
    rates.record("blog", 10.2)
    rates.record("blog", 12.5)
    rates.record("blog", 10.7)  # a long request logged when it ended, after a later short one
    rates.record("blog", 11.1)
    assert rates.count("blog", 12.9, 2) == 2  # buckets 11 and 12
    assert rates.count("blog", 12.9, 10) == 4
    assert rates.last_request("blog") == 12.5


LAZY = IdleView(
    Strategy.LAZY, running=True, paused=False, in_flight=0, last_activity=100.0, pause_after=None, idle_timeout=300.0
)


@pytest.mark.parametrize(
    ("view", "now", "action"),
    [
        (LAZY, 399.0, Action.KEEP),
        (LAZY, 400.0, Action.STOP),
        (LAZY.__class__(**{**LAZY.__dict__, "in_flight": 1}), 10_000.0, Action.KEEP),  # never with work open
        (LAZY.__class__(**{**LAZY.__dict__, "strategy": Strategy.PERSISTENT}), 10_000.0, Action.KEEP),
        (LAZY.__class__(**{**LAZY.__dict__, "pause_after": 10.0}), 109.0, Action.KEEP),
        (LAZY.__class__(**{**LAZY.__dict__, "pause_after": 10.0}), 110.0, Action.PAUSE),
        (LAZY.__class__(**{**LAZY.__dict__, "pause_after": 10.0}), 400.0, Action.STOP),  # stop beats pause
        # Paused: no more pausing, but stopped once idle_timeout passes.
        (
            LAZY.__class__(**{**LAZY.__dict__, "running": False, "paused": True, "pause_after": 10.0}),
            200.0,
            Action.KEEP,
        ),
        (LAZY.__class__(**{**LAZY.__dict__, "running": False, "paused": True}), 400.0, Action.STOP),
        # Starting, draining or stopped: nothing to decide.
        (LAZY.__class__(**{**LAZY.__dict__, "running": False}), 10_000.0, Action.KEEP),
        (LAZY.__class__(**{**LAZY.__dict__, "idle_timeout": None}), 10_000.0, Action.KEEP),
    ],
)
def test_idle_action(view: IdleView, now: float, action: Action) -> None:
    assert idle_action(view, now) is action


def test_backoff_doubles_to_its_cap() -> None:
    backoff = Backoff(first=1.0, cap=60.0)
    assert [backoff.delay(n) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


def test_crashes_make_a_site_failing_and_push_its_next_try_back() -> None:
    backoff = Backoff()
    record = CrashRecord()
    for t in (0.0, 1.0, 3.0, 7.0):
        record = record.crashed(t, up_since=t - 0.5)
        assert not record.failing(t)
    assert (record.consecutive, record.next_try(backoff)) == (4, 7.0 + 8.0)
    record = record.crashed(15.0, up_since=14.5)
    assert record.failing(15.0) and record.next_try(backoff) == 15.0 + 16.0
    # Five minutes after the first crash it no longer counts.
    assert not record.failing(300.5)


def test_staying_up_a_minute_resets_the_backoff() -> None:
    record = CrashRecord().crashed(0.0, None).crashed(1.0, 0.5).crashed(3.0, 2.0)
    assert record.consecutive == 3
    record = record.crashed(100.0, up_since=30.0)  # up 70 s before this crash
    assert record.consecutive == 1 and record.next_try(Backoff()) == 101.0
