"""Memory admission and eviction plans, as tables."""

from __future__ import annotations

import pytest

from activator.core.budget import Plan, Resident, admit
from activator.model import MiB


def r(
    name: str,
    mb: int,
    last: float,
    *,
    paused: bool = False,
    in_flight: int = 0,
    persistent: bool = False,
    busy: bool = False,
) -> Resident:
    return Resident(name, mb * MiB, paused, last, in_flight, persistent, busy)


@pytest.mark.parametrize(
    ("need", "budget", "residents", "plan"),
    [
        # Fits: nobody goes.
        (64, 160, [r("a", 64, 1)], Plan((), 128 * MiB)),
        # Three 64 MiB sites in 160 MiB: the least recently used one makes room.
        (64, 160, [r("a", 64, 1), r("b", 64, 2)], Plan(("a",), 128 * MiB)),
        # Paused before running, whatever their age.
        (64, 160, [r("a", 64, 1), r("b", 64, 2, paused=True)], Plan(("b",), 128 * MiB)),
        # In flight, persistent or busy: never.
        (64, 160, [r("a", 64, 1, in_flight=1), r("b", 64, 2)], Plan(("b",), 128 * MiB)),
        (64, 160, [r("a", 64, 1, busy=True), r("b", 64, 2)], Plan(("b",), 128 * MiB)),
        # As many as it takes, oldest first.
        (256, 320, [r("a", 64, 3), r("b", 64, 1), r("c", 128, 2)], Plan(("b", "c"), 320 * MiB)),
        # Cannot fit even then: nobody is evicted.
        (64, 160, [r("p", 128, 1, persistent=True)], None),
        (64, 160, [r("p", 128, 1, persistent=True), r("a", 64, 0, in_flight=2)], None),
        (512, 160, [r("a", 64, 1)], None),
    ],
)
def test_admission(need: int, budget: int, residents: list[Resident], plan: Plan | None) -> None:
    assert admit(need * MiB, budget * MiB, residents) == plan
