"""What a scenario reports: figures against a baseline from the same run, raw samples, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from activator.proxy.process import bundled_binary

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None  # measured in the same run
    baseline_name: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    @property
    def difference(self) -> float | None:
        return self.value - self.baseline if self.baseline is not None else None


@dataclass
class Result:
    scenario: str
    description: str
    figures: list[Figure] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)  # series name -> values (for the plot)
    unit: str = "ms"

    def to_json(self, quick: bool) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "quick": quick,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(),
            "figures": [asdict(f) | {"ratio": f.ratio, "difference": f.difference} for f in self.figures],
            "samples": self.samples,
            "unit": self.unit,
        }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def latency_figures(label: str, values: list[float], baseline: list[float] | None, baseline_name: str) -> list[Figure]:
    """Median, p95 and p99 of `values` (seconds) in ms, each against the same figure of the baseline."""
    out = []
    for name, fn in (
        ("median", statistics.median),
        ("p95", lambda v: percentile(v, 95)),
        ("p99", lambda v: percentile(v, 99)),
    ):
        out.append(
            Figure(f"{label} {name}", fn(values) * 1000, "ms", fn(baseline) * 1000 if baseline else None, baseline_name)
        )
    return out


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def _userland_proxy() -> str:
    """Whether published ports go through docker-proxy (the daemon's default) or iptables alone."""
    disabled = False
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "dockerd" and "--userland-proxy=false" in (proc.info["cmdline"] or []):
            disabled = True
    with contextlib.suppress(OSError, ValueError):
        disabled = disabled or orjson.loads(Path("/etc/docker/daemon.json").read_bytes()).get("userland-proxy") is False
    return "iptables only (userland-proxy=false)" if disabled else "through docker-proxy (the default)"


_MACHINE: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    if not _MACHINE:
        _MACHINE.update(
            cpus=os.cpu_count(),
            memory_bytes=psutil.virtual_memory().total,
            kernel=platform.release(),
            python=platform.python_version(),
            docker=_version(["docker", "version", "--format", "{{.Server.Version}}"]),
            caddy=_version([str(bundled_binary()), "version"]),
            published_ports=_userland_proxy(),
        )
    return _MACHINE


def write(result: Result, quick: bool) -> Path:
    folder = RESULTS / ("quick" if quick else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.scenario}.json"
    path.write_bytes(orjson.dumps(result.to_json(quick), option=orjson.OPT_INDENT_2))
    plot(result, folder / f"{result.scenario}.png")
    return path


def plot(result: Result, path: Path) -> None:
    """A box plot of each series' samples (a bar per series when each has one value)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(name, values) for name, values in result.samples.items() if values]
    fig, ax = plt.subplots(figsize=(8, 1.6 + 0.6 * max(1, len(series))), dpi=100)
    if all(len(values) == 1 for _, values in series):
        ax.barh([name for name, _ in series], [values[0] for _, values in series])
    elif series:
        ax.boxplot([v for _, v in series], vert=False, showfliers=True)
        ax.set_yticks(range(1, len(series) + 1), [name for name, _ in series])
    ax.set_xlabel(result.unit)
    ax.set_title(textwrap.fill(f"{result.scenario}: {result.description}", 90), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replot(folder: Path) -> None:
    """Draw every PNG again from the JSON beside it."""
    for path in sorted(folder.glob("*.json")):
        data = orjson.loads(path.read_bytes())
        plot(Result(data["scenario"], data["description"], [], data["samples"], data["unit"]), path.with_suffix(".png"))


def table(results: list[Result]) -> str:
    rows = [("scenario", "figure", "value", "baseline", "ratio", "difference")]
    for result in results:
        for f in result.figures:
            rows.append(
                (
                    result.scenario,
                    f.name,
                    f"{f.value:.1f} {f.unit}",
                    f"{f.baseline:.1f} {f.unit} ({f.baseline_name})" if f.baseline is not None else "-",
                    f"{f.ratio:.2f}" if f.ratio is not None else "-",
                    f"{f.difference:+.1f} {f.unit}" if f.difference is not None else "-",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
