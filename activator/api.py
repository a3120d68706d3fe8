"""The admin API, on a unix socket only (mode 0600): site status as JSON and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from activator.metrics import REGISTRY
from activator.model import SiteState
from activator.monitor import Monitor
from activator.proxy.caddy import CaddyError
from activator.store import SiteCounts, Store
from activator.supervisor import Supervisor

ADMIN_SUPERVISOR = web.AppKey("admin_supervisor", Supervisor)
ADMIN_STORE = web.AppKey("admin_store", Store)
ADMIN_MONITOR = web.AppKey("admin_monitor", Monitor)


async def site_status(supervisor: Supervisor, store: Store, monitor: Monitor) -> list[dict[str, Any]]:
    now = supervisor.clock()
    counts = await store.site_counts()
    try:
        in_flight = await supervisor.router.in_flight()
    except (aiohttp.ClientError, CaddyError, OSError):
        in_flight = {}
    rows = []
    for name, site in supervisor.sites.items():
        last = supervisor.rates.last_request(name)
        c = counts.get(name, SiteCounts())
        failing = site.state is SiteState.STOPPED and supervisor.failing(site, now)
        rows.append(
            {
                "name": name,
                "state": "failing" if failing else site.state.value,
                "container_id": site.container_id[:12] if site.container_id else None,
                "host_port": site.host_port,
                "routed": site.state is SiteState.RUNNING and site.routed.is_set(),
                "requests_per_minute": round(supervisor.rates.per_minute(name, now), 2),
                "last_request_age_s": round(now - last, 1) if last is not None else None,
                # What the idle policy counts: since the last request, or the start or wake if later.
                "idle_s": round(now - supervisor.last_activity(site), 1) if site.up_since else None,
                "in_flight": site.open_requests(in_flight),
                "waiting": site.waiting,
                "starts": c.starts,
                "wakes": c.wakes,
                "last_start_ms": round(c.last_start_ms) if c.last_start_ms is not None else None,
                "crashes": c.crashes,
                "memory_used": monitor.snapshot.memory_used.get(name),
                "memory_limit": site.config.memory_limit,
                "network": site.config.network.value,
                "holder_id": site.holder.id[:12] if site.holder else None,
                "holder_memory": site.holder_memory if site.holder else None,
                "cpus": site.config.cpu_quota,
                "cpu_shares": site.config.cpu_weight,
                "strategy": site.config.strategy.value,
                "last_failure": site.failure,
            }
        )
    return rows


def budget_status(supervisor: Supervisor) -> dict[str, int]:
    holders = supervisor.holders_memory()
    used = sum(s.config.memory_limit for s in supervisor.sites.values() if s.holds_memory) + holders
    return {"used": used, "holders": holders, "total": supervisor.config.budget.memory}


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


async def status(request: web.Request) -> web.Response:
    supervisor, monitor = request.app[ADMIN_SUPERVISOR], request.app[ADMIN_MONITOR]
    return web.json_response(
        {
            "budget": budget_status(supervisor),
            "host": host_status(monitor),
            "sites": await site_status(supervisor, request.app[ADMIN_STORE], monitor),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_admin_app(supervisor: Supervisor, store: Store, monitor: Monitor) -> web.Application:
    app = web.Application()
    app[ADMIN_SUPERVISOR] = supervisor
    app[ADMIN_STORE] = store
    app[ADMIN_MONITOR] = monitor
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app
