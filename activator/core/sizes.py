"""Server sizes for `dialup migrate` and `dialup restore --size`: the plan made for today's 4 GB, 2-vCPU server,
scaled to another size by the same shares (pure)."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30


@dataclass(frozen=True)
class Size:
    memory: int  # bytes of RAM
    cpus: int


SIZES = {"small": Size(2 * GiB, 1), "medium": Size(4 * GiB, 2), "large": Size(8 * GiB, 4)}
PLAN = SIZES["medium"]  # what the defaults were made for
# The plan's shares of the 4 GB, 2-vCPU server: the sites' memory budget, and what builds may use.
BUDGET_SHARE = 2.1 / 4  # of the memory
BUILD_MEMORY_SHARE = 1 / 4  # of the memory
BUILD_CPU_SHARE = 1 / 2  # of the cores
BUILDS_PER_CPU = 1


@dataclass(frozen=True)
class Shares:
    budget: int  # bytes: running and paused sites' limits, together
    build_memory: int
    build_cpus: float
    build_parallel: int


def shares(size: Size) -> Shares:
    return Shares(
        budget=int(size.memory * BUDGET_SHARE),
        build_memory=int(size.memory * BUILD_MEMORY_SHARE),
        build_cpus=size.cpus * BUILD_CPU_SHARE,
        build_parallel=max(1, size.cpus * BUILDS_PER_CPU),
    )


def toml_tables(size: Size) -> dict[str, dict[str, object]]:
    """The settings a config for that size has: [budget] and [builds] keys, as the config file writes them."""
    s = shares(size)
    return {
        "budget": {"memory": f"{s.budget // (1 << 20)}MiB"},
        "builds": {"memory": f"{s.build_memory // (1 << 20)}MiB", "cpus": s.build_cpus, "parallel": s.build_parallel},
    }
