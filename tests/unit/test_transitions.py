"""The transition table, pure: every row, every pair not in it, and the guards."""

from __future__ import annotations

import itertools

import pytest

from activator.core.transitions import TABLE, Event, Facts, Guard, decide
from activator.model import SiteState

FREE = Facts(waiting=0, may_start=True)


@pytest.mark.parametrize(("state", "event"), sorted(TABLE, key=str))
def test_every_row_is_allowed_with_its_guard_satisfied(state: SiteState, event: Event) -> None:
    rule = TABLE[(state, event)]
    decision = decide(state, event, FREE)
    assert decision.allowed
    assert decision.target is (rule.target or state)


@pytest.mark.parametrize(
    ("state", "event"), [p for p in itertools.product(SiteState, Event) if p not in TABLE], ids=str
)
def test_every_pair_not_in_the_table_is_refused_and_changes_nothing(state: SiteState, event: Event) -> None:
    decision = decide(state, event, FREE)
    assert not decision.allowed and decision.target is state
    assert str(event) in decision.refusal and str(state) in decision.refusal


@pytest.mark.parametrize(("state", "event"), [k for k, r in TABLE.items() if r.guard is Guard.IDLE], ids=str)
def test_a_site_with_requests_waiting_is_not_drained(state: SiteState, event: Event) -> None:
    decision = decide(state, event, Facts(waiting=1, may_start=True))
    assert not decision.allowed and decision.target is state and "waiting" in decision.refusal


def test_a_failing_site_is_not_started_before_its_backoff_ends() -> None:
    assert not decide(SiteState.STOPPED, Event.START, Facts(waiting=3, may_start=False)).allowed
    assert decide(SiteState.STOPPED, Event.START, Facts(waiting=3, may_start=True)).allowed


def test_the_table_names_only_real_moves() -> None:
    # A "stay" rule is written STAY (target None), never as a move to the same state.
    assert all(rule.target is not state for (state, _), rule in TABLE.items())
    # Every state can be reached, and left.
    assert {rule.target for rule in TABLE.values() if rule.target is not None} == set(SiteState)
    assert {state for state, _ in TABLE} == set(SiteState)
