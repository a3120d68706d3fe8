"""Charts drawn server-side as SVG (issue 16, groundwork): no library, no script; pure (points in, text out)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 600, 160, 28


def line_chart(title: str, series: Sequence[tuple[float, float | None]], unit: str, start: float, end: float) -> str:
    """One series of (unix seconds, value; None: no figure) between start and end, as an SVG with a title, its
    maximum on the axis, and a gap where there is no figure."""
    values = [v for _, v in series if v is not None]
    top = max(values, default=0.0) or 1.0
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return PAD + (t - start) / span * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)

    paths: list[list[str]] = []
    run: list[str] = []
    for t, v in series:
        if v is None:
            if run:
                paths.append(run)
            run = []
        else:
            run.append(f"{x(t):.1f},{y(v):.1f}")
    if run:
        paths.append(run)
    lines = "".join(f'<polyline points="{" ".join(p)}" fill="none" stroke="currentColor"/>' for p in paths)
    # Each figure a dot too: a lone one (a single busy minute) would draw no line.
    lines += "".join(
        f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2" fill="currentColor"/>' for t, v in series if v is not None
    )
    label = escape(f"{title} (max {top:g} {unit})")
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f'<text x="{PAD}" y="16">{label}</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#999"/>'
        f"{lines}</svg>"
    )


def bar(used: float, total: float, label: str, mark: float | None = None) -> str:
    """A horizontal bar: `used` of `total` (the memory budget; a host figure, with its threshold at `mark`). SVG
    attributes, not inline styles: the panel's CSP allows no inline style."""
    share = min(1.0, used / total) if total else 0.0
    threshold = ""
    if mark is not None and total:
        at = min(1.0, mark / total) * 400
        threshold = f'<line x1="{at:.1f}" y1="0" x2="{at:.1f}" y2="14" stroke="#c00"/>'
    return (
        f'<svg class="bar" viewBox="0 0 400 30" role="meter" aria-valuenow="{used:g}" aria-valuemax="{total:g}"'
        f' aria-label="{escape(label)}"><rect width="400" height="14" fill="#eee"/>'
        f'<rect width="{share * 400:.1f}" height="14" fill="#4a7"/>{threshold}'
        f'<text x="0" y="28">{escape(label)}</text></svg>'
    )


def series(points: Sequence[tuple[int, float]], start: int, end: int, step: int) -> list[tuple[float, float | None]]:
    """(period start, value) pairs laid on every step from start to end: a period with no point is a gap."""
    found = dict(points)
    return [(float(t), found.get(t)) for t in range(start - start % step, end, step)]
