"""Server sizes: today's plan (4 GB, 2 vCPU) is the medium one, and the others get the same shares."""

from __future__ import annotations

import pytest

from activator.config import BudgetConfig, BuildsConfig
from activator.core.sizes import SIZES, shares, toml_tables

MiB = 1 << 20


def test_the_medium_size_is_what_the_defaults_were_made_for() -> None:
    medium = shares(SIZES["medium"])
    assert medium.budget == BudgetConfig().memory
    assert (medium.build_memory, medium.build_cpus, medium.build_parallel) == (
        BuildsConfig().memory, BuildsConfig().cpus, BuildsConfig().parallel
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "budget_mib", "build_mib", "cpus", "parallel"),
    [("small", 1075, 512, 0.5, 1), ("medium", 2150, 1024, 1.0, 2), ("large", 4300, 2048, 2.0, 4)],
)
def test_sizes_scale_by_the_same_shares(size: str, budget_mib: int, build_mib: int, cpus: float, parallel: int) -> None:
    assert toml_tables(SIZES[size]) == {
        "budget": {"memory": f"{budget_mib}MiB"},
        "builds": {"memory": f"{build_mib}MiB", "cpus": cpus, "parallel": parallel},
    }
