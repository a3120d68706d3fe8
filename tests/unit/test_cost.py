"""Cost, waste and recommendations by the documented formula (OpenCost's): max(reserved, used) of the capacity."""

from __future__ import annotations

import pytest

from activator.core.capacity import DAY, forecast, next_size, trend
from activator.core.cost import MiB, Usage, allocate, recommend

HOURS = 30 * 24  # a month
BUDGET = 2150 * MiB


def usage(site: str, limit_mib: int, hours: float, used_mib: float, peak_mib: int) -> Usage:
    return Usage(site, limit_mib * MiB * hours, used_mib * MiB * hours, peak_mib * MiB, limit_mib * MiB)


def test_each_site_pays_its_share_of_max_reserved_used_and_the_rest_is_idle() -> None:
    usages = [
        usage("blog", 64, HOURS, 21, 30),  # always up: its limit's share
        usage("api", 256, HOURS / 2, 100, 200),  # up half the month
        usage("hog", 64, HOURS, 90, 96),  # its limit raised during the month: its use beat what it had reserved
    ]
    result = allocate(25.0, BUDGET * HOURS, usages)
    cost = {c.site: c.cost for c in result.charges}
    assert cost["blog"] == pytest.approx(25.0 * 64 / 2150)
    assert cost["api"] == pytest.approx(25.0 * 256 * 0.5 / 2150)
    assert cost["hog"] == pytest.approx(25.0 * 90 / 2150)  # used beat reserved
    assert result.idle == pytest.approx(25.0 - sum(cost.values()))
    waste = {c.site: c.waste for c in result.charges}
    assert waste == {"blog": 34 * MiB, "api": 56 * MiB, "hog": 0}


def test_use_above_the_capacity_is_charged_the_price_and_no_more() -> None:
    result = allocate(10.0, 100.0, [Usage("a", 150, 0, 1, 1), Usage("b", 50, 0, 1, 1)])
    assert [c.cost for c in result.charges] == pytest.approx([7.5, 2.5]) and result.idle == 0


@pytest.mark.parametrize(
    ("limit", "peak", "suggested", "text"),
    [
        (64, 21, 32, "blog's peak in 7 days was 21 MiB of 64 MiB: a 32 MiB limit would hold it"),
        (64, 40, None, None),  # 64 is 48 * 1.25 rounded up: nothing worth saying
        (64, 60, 96, "blog's peak in 7 days was 60 MiB of 64 MiB: a 96 MiB limit would give it room"),
        (512, 100, 128, "blog's peak in 7 days was 100 MiB of 512 MiB: a 128 MiB limit would hold it"),
    ],
)
def test_recommendations(limit: int, peak: int, suggested: int | None, text: str | None) -> None:
    found = recommend("blog", limit * MiB, peak * MiB, 7)
    assert (found.suggested // MiB if found else None) == suggested
    assert (str(found) if found else None) == text


def test_a_growing_peak_crosses_the_budget_on_the_day_the_line_says() -> None:
    t0 = 1_800_000_000
    peaks = [(t0 + d * DAY, 1000.0 + 10 * d) for d in range(14)]  # 10 a day, from 1000
    assert trend(peaks).per_day == pytest.approx(10.0)  # type: ignore[union-attr]
    when = forecast(peaks, 1500.0)
    assert when is not None and when.crosses_at == pytest.approx(t0 + 50 * DAY) and not when.already
    assert forecast(peaks[:5], 1500.0) is None  # too few days to tell
    flat = [(t, 1000.0) for t, _ in peaks]
    assert forecast(flat, 1500.0).crosses_at is None  # type: ignore[union-attr]
    assert forecast(peaks, 1100.0).already  # type: ignore[union-attr]


def test_the_next_size_is_the_smallest_whose_budget_holds_more() -> None:
    assert next_size(1000 * MiB)[0] == "small"  # type: ignore[index]
    assert next_size(1100 * MiB)[0] == "medium"  # type: ignore[index]
    assert next_size(2200 * MiB)[0] == "large"  # type: ignore[index]
    assert next_size(8000 * MiB) is None
