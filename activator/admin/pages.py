"""The panel's pages as HTML, pure (issue 16, groundwork): the status the admin API gives, and each site's
figures from its history, in; text out. No inline script or style: the page's CSP allows its own files only
(panel.js sorts the table; panel.css)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from activator.admin.charts import bar, line_chart, series
from activator.core.history import HOUR, LATENCY_BOUNDS_MS, MINUTE, Point, roll_up

MiB = 1 << 20
DAY = 86400


@dataclass(frozen=True)
class SiteFigures:
    """One site's figures from its history."""

    requests_per_minute: float  # over the last hour
    p95_ms: float | None  # over the last hour
    errors: int  # 5xx, over the last hour
    uptime: float | None  # over the history's last 30 days
    cold_starts_today: int  # since midnight (UTC)
    cost: float | None  # a month, by core/cost.py (None: no price set)


def figures_of(hour: Sequence[Point], month: Point | None, today: Point | None, cost: float | None) -> SiteFigures:
    """From one site's minute points of the last hour, and its totals over the last 30 days and since midnight."""
    latency = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for p in hour:
        latency = [a + b for a, b in zip(latency, p.latency, strict=True)]
    merged = Point("", 0, HOUR, latency=tuple(latency))
    return SiteFigures(
        requests_per_minute=sum(p.requests for p in hour) / 60,
        p95_ms=merged.percentile(0.95),
        errors=sum(p.errors for p in hour),
        uptime=month.uptime if month else None,
        cold_starts_today=today.cold_starts if today else 0,
        cost=cost,
    )


def _cell(value: object, sort: float | str | None = None) -> str:
    key = "" if sort is None else f' data-sort="{escape(str(sort))}"'
    return f"<td{key}>{escape(str(value))}</td>"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{escape(title)}</title><link rel="stylesheet" href="/panel/panel.css">'
        '<script src="/panel/panel.js" defer></script></head>'
        f"<body>{body}</body></html>"
    )


COLUMNS = (
    "site", "state", "requests/min", "p95 ms", "errors (1 h)", "uptime", "memory", "cold starts today", "cost/month",
)  # fmt: skip


def overview(
    status: Mapping[str, Any],
    figures: Mapping[str, SiteFigures],
    events: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    currency: str,
) -> str:
    """Every site in one sortable table, the budget bar, the host against its thresholds, alerts, the timeline."""
    parts = ["<h1>dialup</h1>"]
    shown = list(alerts)
    if shown:
        items = "".join(
            f"<li>{escape(a['site'])}: {escape(a['kind'])} {escape(a['detail'])}"
            f'<form method="post" action="/panel/alerts/{int(a["id"])}/ack"><button>acknowledge</button></form></li>'
            for a in shown
        )
        parts.append(f'<section id="alerts"><h2>Alerts</h2><ul>{items}</ul></section>')
    budget = status["budget"]
    parts.append(
        bar(budget["used"], budget["total"], f"budget: {budget['used'] // MiB} of {budget['total'] // MiB} MiB")
    )
    for name, figure in (status.get("host") or {}).items():
        if figure["value"] is not None:
            bound = figure.get("critical") or figure["warning"]
            top = max(100.0, figure["value"]) if name != "load" else max(bound * 1.5, figure["value"])
            label = f"{name} {figure['value']:.1f} (warning {figure['warning']:g}): {figure['level']}"
            parts.append(bar(figure["value"], top, label, mark=figure["warning"]))
    head = "".join(f'<th><button data-column="{i}">{escape(c)}</button></th>' for i, c in enumerate(COLUMNS))
    rows = []
    for row in status["sites"]:
        f = figures.get(row["name"])
        used, limit = row.get("memory_used"), row["memory_limit"]
        memory = f"{(used or 0) // MiB} / {limit // MiB} MiB" if limit else "-"
        rows.append(
            "<tr>"
            f'<td><a href="/panel/sites/{escape(row["name"])}">{escape(row["name"])}</a></td>'
            + _cell(row["state"])
            + _cell(f"{f.requests_per_minute:.1f}" if f else "-", f.requests_per_minute if f else -1)
            + _cell(f"{f.p95_ms:g}" if f and f.p95_ms is not None else "-", f.p95_ms if f and f.p95_ms else -1)
            + _cell(f.errors if f else "-", f.errors if f else -1)
            + _cell(f"{f.uptime:.2%}" if f and f.uptime is not None else "-", f.uptime if f and f.uptime else -1)
            + _cell(memory, used or 0)
            + _cell(f.cold_starts_today if f else "-", f.cold_starts_today if f else -1)
            + _cell(f"{currency}{f.cost:.2f}" if f and f.cost is not None else "-", f.cost if f and f.cost else -1)
            + "</tr>"
        )
    parts.append(f'<table id="sites"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    timeline = "".join(
        f"<li>{escape(e['when'])} {escape(e['site'])} {escape(e['kind'])} {escape(e['detail'])}</li>" for e in events
    )
    parts.append(f'<section id="timeline"><h2>Events</h2><ol>{timeline}</ol></section>')
    return _page("dialup", "".join(parts))


WINDOWS = (("hour", HOUR, MINUTE), ("day", DAY, HOUR), ("week", 7 * DAY, HOUR))


def site_page(name: str, points: Sequence[Point], now: float) -> str:
    """Charts of the site over the last hour, day and week: requests, p95 response time, memory, cold starts."""
    parts = [f'<h1><a href="/panel">dialup</a> / {escape(name)}</h1>']
    for label, span, step in WINDOWS:
        start = int(now - span)
        recent = [p for p in points if p.start >= start]
        # By the hour: the hours kept, and the minutes not rolled up yet, rolled up here.
        minutes = [p for p in recent if p.seconds == MINUTE]
        mine = minutes if step == MINUTE else [p for p in recent if p.seconds == HOUR] + roll_up(minutes, HOUR)
        figures: dict[str, list[tuple[int, float]]] = {
            "requests": [(p.start, float(p.requests)) for p in mine],
            "p95 ms": [(p.start, v) for p in mine if (v := p.percentile(0.95)) is not None and v != float("inf")],
            "memory MiB": [(p.start, p.memory_peak / MiB) for p in mine],
            "cold starts": [(p.start, float(p.cold_starts)) for p in mine],
        }
        charts = "".join(
            line_chart(f"{what}, last {label}", series(values, start, int(now), step), "", start, now)
            for what, values in figures.items()
        )
        parts.append(f'<section class="window"><h2>Last {label}</h2>{charts}</section>')
    return _page(f"dialup: {name}", "".join(parts))


CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'"
