"""python -m bench [SCENARIO ...] [--quick]: run scenarios, write bench/results/*.json and *.png, print a table."""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.report import RESULTS, Result, replot, table, write
from bench.scenarios import (
    activity,
    backups,
    density,
    deploys,
    editor,
    load,
    panel,
    reloads,
    scaling,
    startup,
    throughput,
)

SCENARIOS: dict[str, Callable[[bool], Awaitable[Result]]] = {
    "cold-start": startup.cold_start,
    "slow-boot": startup.slow_boot,
    "wake": startup.wake,
    "warm-path": throughput.warm_path,
    "fallback-path": throughput.fallback_path,
    "burst": load.burst,
    "footprint": load.footprint,
    "reloads": reloads.reloads,
    "density": density.density,
    "activity": activity.activity,
    "deploys": deploys.deploys,
    "editor": editor.editor,
    "backups": backups.backups,
    "scaling": scaling.scaling,
    "panel": panel.panel,
}


def _raise_open_files() -> None:
    # A 1,000-request burst needs more descriptors than the usual soft limit of 1024, here and in the
    # activator and Caddy that inherit it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def _build_images() -> None:
    """The sites every scenario runs, from local files only (cached by Docker after the first build)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [str(root / "scripts" / "build-images.sh"), str(root / "tests" / "images"), "dialup-test"], check=True
    )


async def main(names: list[str], quick: bool) -> None:
    _raise_open_files()
    _build_images()
    results = []
    for name in names:
        began = time.monotonic()
        result = await SCENARIOS[name](quick)
        path = write(result, quick)
        print(f"{name}: {time.monotonic() - began:.0f} s, wrote {path.relative_to(path.parents[2])}", flush=True)
        results.append(result)
    print()
    print(table(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        choices=[*SCENARIOS, []],
        metavar="SCENARIO",
        help=f"any of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test of the harness (< 2 min)")
    parser.add_argument("--replot", action="store_true", help="only draw the PNGs again from the JSON results")
    args = parser.parse_args()
    if args.replot:
        replot(RESULTS / ("quick" if args.quick else ""))
    else:
        asyncio.run(main(args.scenarios or list(SCENARIOS), args.quick))
