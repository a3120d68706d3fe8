"""The admin API, on a unix socket only (mode 0600): site status as JSON and Prometheus /metrics."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from activator.metrics import REGISTRY
from activator.model import SiteState
from activator.supervisor import Supervisor

ADMIN_SUPERVISOR = web.AppKey("admin_supervisor", Supervisor)


def site_status(supervisor: Supervisor) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "state": site.state.value,
            "container_id": site.container_id,
            "host_port": site.host_port,
            "waiting": site.waiting,
            "routed": site.state is SiteState.RUNNING and site.routed.is_set(),
            "memory_limit": site.config.memory_limit,
            "strategy": site.config.strategy.value,
            "last_failure": site.failure,
        }
        for name, site in supervisor.sites.items()
    ]


async def status(request: web.Request) -> web.Response:
    return web.json_response({"sites": site_status(request.app[ADMIN_SUPERVISOR])})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_admin_app(supervisor: Supervisor) -> web.Application:
    app = web.Application()
    app[ADMIN_SUPERVISOR] = supervisor
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    return app
