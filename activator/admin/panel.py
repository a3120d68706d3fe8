"""The panel's routes on the admin socket (issue 16, groundwork): the overview, a site's charts, alerts to
acknowledge, and the page's own two files. Everything read from the status the admin API gives and the history."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp import web

from activator.admin.history import History
from activator.admin.pages import CSP, SiteFigures, figures_of, overview, site_page
from activator.admin.report import COST_DAYS, DAY
from activator.config import Config
from activator.core.cost import allocate, usage_of
from activator.core.history import HOUR, MINUTE, Point, merge, roll_up

STATIC = Path(__file__).parent / "static"
ALERT_KINDS = ("threshold", "crash", "oom", "start_failed", "backup_failed", "refused", "scale_refused", "caddy_down")
ACKS = "CREATE TABLE IF NOT EXISTS alert_acks (event_id INTEGER PRIMARY KEY, ts REAL NOT NULL)"


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers={"Content-Security-Policy": CSP})


async def site_figures(
    db: aiosqlite.Connection, config: Config, now: float, pending: list[Point]
) -> dict[str, SiteFigures]:
    history = History(db)
    month = _with(await history.totals(int(now - COST_DAYS * DAY)), pending)
    today = _with(await history.totals(int(now - now % DAY)), [p for p in pending if p.start >= now - now % DAY])
    recent = await history.points(seconds=MINUTE, since=int(now - HOUR)) + pending
    hour = roll_up([p for p in recent if p.seconds == MINUTE and p.start >= now - HOUR], MINUTE)
    sites = list(config.container_sites)
    costs: dict[str, float] = {}
    if config.cost.monthly and month:
        hours = max(3600.0, now - min(p.start for p in month.values())) / 3600
        usages = [usage_of(s.name, [month[s.name]] if s.name in month else [], s.memory_limit) for s in sites]
        costs = {c.site: c.cost for c in allocate(config.cost.monthly, config.budget.memory * hours, usages).charges}
    return {
        s.name: figures_of(
            [p for p in hour if p.site == s.name], month.get(s.name), today.get(s.name), costs.get(s.name)
        )
        for s in sites
    }


def _with(totals: dict[str, Point], pending: list[Point]) -> dict[str, Point]:
    """Totals with the minutes not written yet added (each site's oldest start kept)."""
    found = dict(totals)
    for p in pending:
        there = found.get(p.site)
        found[p.site] = merge(there, p) if there is not None else replace(p, seconds=0)
    return found


async def alerts(db: aiosqlite.Connection, since: float) -> list[dict[str, Any]]:
    """Events that call for attention, newest first, until acknowledged."""
    await db.execute(ACKS)
    marks = ",".join("?" * len(ALERT_KINDS))
    query = (
        f"SELECT id, site, kind, detail FROM events WHERE kind IN ({marks}) AND ts >= ? "
        "AND NOT (kind = 'threshold' AND detail LIKE '%(ok)') "  # a level back to ok calls for nothing
        "AND id NOT IN (SELECT event_id FROM alert_acks) ORDER BY id DESC LIMIT 20"
    )
    async with db.execute(query, (*ALERT_KINDS, since)) as cur:
        return [{"id": i, "site": s, "kind": k, "detail": d} for i, s, k, d in await cur.fetchall()]


async def timeline(db: aiosqlite.Connection) -> list[dict[str, Any]]:
    query = "SELECT ts, site, kind, detail FROM events ORDER BY id DESC LIMIT 50"
    async with db.execute(query) as cur:
        return [
            {"when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)), "site": s, "kind": k, "detail": d}
            for ts, s, k, d in await cur.fetchall()
        ]


def routes(status: Any, db: Any, config: Any, pending: Callable[[], list[Point]]) -> list[web.RouteDef]:
    """`status(request)`: the admin API's status body; `db()`: the database; `config()`: the config in force;
    `pending()`: the minutes the recorder has not written yet (the one under way)."""

    async def page(request: web.Request) -> web.Response:
        now = time.time()
        conn, cfg = db(), config()
        body = await status(request)
        shown = overview(body, await site_figures(conn, cfg, now, pending()), await timeline(conn),
                         await alerts(conn, now - 7 * DAY), cfg.cost.currency)  # fmt: skip
        return _html(shown)

    async def site(request: web.Request) -> web.Response:
        name, cfg = request.match_info["name"], config()
        if name not in {s.name for s in cfg.container_sites}:
            raise web.HTTPNotFound(text=f"no site {name!r}\n")
        now = time.time()
        history = History(db())
        since = int(now - 7 * DAY)
        kept = await history.points(seconds=HOUR, site=name, since=since)
        kept += await history.points(seconds=MINUTE, site=name, since=since)
        found = kept + [p for p in pending() if p.site == name]
        # A minute written and the same minute still under way (after a restart) are one.
        points = [p for p in found if p.seconds == HOUR] + roll_up([p for p in found if p.seconds == MINUTE], MINUTE)
        return _html(site_page(name, points, now))

    async def acknowledge(request: web.Request) -> web.Response:
        conn = db()
        await conn.execute(ACKS)
        await conn.execute(
            "INSERT OR IGNORE INTO alert_acks VALUES (?, ?)", (int(request.match_info["id"]), time.time())
        )
        await conn.commit()
        raise web.HTTPSeeOther("/panel")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in ("panel.js", "panel.css"):
            raise web.HTTPNotFound()
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind)

    return [
        web.get("/panel", page),
        web.get("/panel/sites/{name}", site),
        web.post("/panel/alerts/{id:\\d+}/ack", acknowledge),
        web.get("/panel/{file}", static),
    ]
