"""Bounds on builds. Docker's BuildKit runs every RUN step in a cgroup beneath docker/buildkit (it ignores
`--cgroup-parent`), so that parent is where a build is held: a low CPU weight (the sites and the activator
win when the CPU is contended), a CPU quota and a memory limit (a build never takes the whole box)."""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
BUILD_SHARES = 128  # against 512 for sites and 1024 for everything else (cgroup v1 cpu.shares)
PERIOD_US = 100_000


def bound_builds(memory: int, cpus: float, root: Path = CGROUP_ROOT) -> str:
    """Set the limits on docker/buildkit (made here if BuildKit has not yet). Returns what was set, for the
    build's log; raises OSError when the cgroups cannot be written (not root, no cgroup file system)."""
    quota = int(cpus * PERIOD_US)
    if (root / "cgroup.controllers").exists():  # cgroup v2: one tree
        group = root / "docker" / "buildkit"
        group.mkdir(parents=True, exist_ok=True)
        (group / "cpu.weight").write_text(str(max(1, BUILD_SHARES * 100 // 1024)))
        (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        (group / "memory.max").write_text(str(memory))
    else:
        cpu, mem = root / "cpu" / "docker" / "buildkit", root / "memory" / "docker" / "buildkit"
        cpu.mkdir(parents=True, exist_ok=True)
        mem.mkdir(parents=True, exist_ok=True)
        (cpu / "cpu.shares").write_text(str(BUILD_SHARES))
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        (mem / "memory.limit_in_bytes").write_text(str(memory))
    return f"builds limited to {cpus:g} CPU (weight {BUILD_SHARES}/1024) and {memory >> 20} MiB"
