"""The panel's routes on the admin socket (issue 16, groundwork): the overview, a site's charts, alerts to
acknowledge, and the page's own two files. Everything read from the status the admin API gives and the history."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
from aiohttp import web

from activator.admin.history import History
from activator.admin.pages import CSP, SiteFigures, figures_of, overview, site_page
from activator.admin.report import COST_DAYS, DAY, points_since
from activator.config import Config
from activator.core.cost import allocate, usage_of
from activator.core.history import HOUR, MINUTE, Point, roll_up

STATIC = Path(__file__).parent / "static"
ALERT_KINDS = ("threshold", "crash", "oom", "start_failed", "backup_failed", "refused", "scale_refused", "caddy_down")
ACKS = "CREATE TABLE IF NOT EXISTS alert_acks (event_id INTEGER PRIMARY KEY, ts REAL NOT NULL)"


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers={"Content-Security-Policy": CSP})


async def site_figures(
    db: aiosqlite.Connection, config: Config, now: float, pending: list[Point]
) -> dict[str, SiteFigures]:
    history = History(db)
    month = await points_since(history, now - COST_DAYS * DAY) + pending
    sites = list(config.container_sites)
    costs: dict[str, float] = {}
    if config.cost.monthly and month:
        hours = max(3600.0, now - min(p.start for p in month)) / 3600
        usages = [usage_of(s.name, (p for p in month if p.site == s.name), s.memory_limit) for s in sites]
        costs = {c.site: c.cost for c in allocate(config.cost.monthly, config.budget.memory * hours, usages).charges}
    return {
        s.name: figures_of([p for p in month if p.site == s.name], now, costs.get(s.name) if costs else None)
        for s in sites
    }


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
        found = [p for p in await points_since(History(db()), now - 7 * DAY) + pending() if p.site == name]
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
