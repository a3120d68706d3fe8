"""The admin API, on a unix socket only (mode 0600): site status as JSON and Prometheus /metrics."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from activator.backups.scheduler import Scheduler
from activator.builds.api import DEPLOYER, RELEASES
from activator.metrics import REGISTRY
from activator.monitor import Monitor
from activator.proxy.caddy import CaddyError
from activator.proxy.guard import CaddyGuard
from activator.status import SiteRow, budget, files_row, live_row
from activator.store import SiteCounts, Store
from activator.supervisor import Supervisor

ADMIN_SUPERVISOR = web.AppKey("admin_supervisor", Supervisor)
ADMIN_STORE = web.AppKey("admin_store", Store)
ADMIN_MONITOR = web.AppKey("admin_monitor", Monitor)
ADMIN_GUARD = web.AppKey("admin_guard", CaddyGuard)
ADMIN_BACKUPS = web.AppKey("admin_backups", Scheduler)  # set when [backups] is
CADDY_ERRORS = (aiohttp.ClientError, CaddyError, OSError)


def host_status(monitor: Monitor) -> dict[str, Any]:
    t = monitor.config.thresholds
    host = monitor.snapshot.host
    figures = {
        "memory": (host.memory if host else None, {"warning": t.memory_warning, "critical": t.memory_critical}),
        "cpu": (host.cpu if host else None, {"warning": t.cpu_warning}),
        "load": (host.load if host else None, {"warning": t.load_warning}),
        "storage": (host.storage if host else None, {"warning": t.storage_warning}),
    }
    return {
        name: {"value": value, **bounds, "level": monitor.snapshot.levels.get(name, "ok")}
        for name, (value, bounds) in figures.items()
    }


def caddy_status(guard: CaddyGuard) -> dict[str, Any]:
    return {
        "managed": guard.managed,
        "up": guard.up,
        "pid": guard.process.pid() if guard.process is not None else None,
        "restarts": guard.restarts,
        "tcp_migrate_req": guard.migrate,
    }


async def status(request: web.Request) -> web.Response:
    return web.json_response(await status_body(request))


async def status_body(request: web.Request) -> dict[str, Any]:
    """What /status answers: the budget, the host, Caddy, builds, every site's row (and backups')."""
    sup, monitor, store = request.app[ADMIN_SUPERVISOR], request.app[ADMIN_MONITOR], request.app[ADMIN_STORE]
    counts = await store.site_counts()
    try:
        in_flight = await sup.router.in_flight()
        if sup.routes.live:
            await sup.routes.verify()  # show the routes Caddy really has
    except CADDY_ERRORS:
        in_flight = {}
    used = monitor.snapshot.memory_used
    deployer = request.app[DEPLOYER]
    live = await request.app[RELEASES].live_ids()
    rows: list[SiteRow] = []
    for cfg in deployer.config.sites:
        doing, release = deployer.doing.get(cfg.name), live.get(cfg.name)
        if cfg.serves_files:
            rows.append(files_row(cfg, counts.get(cfg.name, SiteCounts()), release, doing))
            continue
        site = sup.sites.get(cfg.name)
        if site is None:
            continue  # being added by a reload: shown once it is made
        row = live_row(sup, site, counts.get(cfg.name, SiteCounts()), in_flight, used.get(cfg.name))
        row["release"], row["deploy"] = release, doing
        rows.append(row)
    queue = deployer.queue
    body = {
        "budget": budget(sup.config, rows, sup.holders.memory()),
        "host": host_status(monitor),
        "caddy": caddy_status(request.app[ADMIN_GUARD]),
        "builds": {"parallel": queue.parallel, "building": queue.building, "waiting": queue.waiting},
        "sites": rows,
    }
    if ADMIN_BACKUPS in request.app:
        body["backups"] = request.app[ADMIN_BACKUPS].status()
    return body


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@web.middleware
async def local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin socket is reached by dialup's commands (Host: localhost, no Origin) or by a browser through a
    forward of the socket (`ssh -L`, for the panel). A page elsewhere in that browser must not use it: a Host
    that is not a local name (DNS rebinding) is refused, and so is a change (POST) whose Origin is not the
    page's own (a cross-site form)."""
    host = (request.host or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if name not in LOCAL_HOSTS:
        raise web.HTTPForbidden(text="the admin API answers local names only\n")
    origin = request.headers.get("Origin")
    if request.method not in ("GET", "HEAD") and origin is not None and urlsplit(origin).netloc.lower() != host:
        raise web.HTTPForbidden(text="a change from another page's origin is refused\n")
    return await handler(request)


def make_admin_app(supervisor: Supervisor, store: Store, monitor: Monitor, guard: CaddyGuard) -> web.Application:
    app = web.Application(middlewares=[local_only])
    app[ADMIN_GUARD] = guard
    app[ADMIN_SUPERVISOR] = supervisor
    app[ADMIN_STORE] = store
    app[ADMIN_MONITOR] = monitor
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app
