"""Caddy: render its JSON config, push it over the admin API, and (when managed) run the caddy binary."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from activator.config import CaddyConfig, Config, SiteConfig
from activator.proxy.accesslog import ACCESS_LOGGER

log = logging.getLogger(__name__)

SERVER = "dialup"
ROUTE_PREFIX = "dialup-site-"  # a site's route's @id: the prefix and its name
# While a container is marked failed after a refused dial, Caddy sends its site's requests to the activator.
FAIL_DURATION = "2s"


class CaddyError(Exception):
    pass


def proxy_id(site: str) -> str:
    return f"dialup-proxy-{site}"


def _upstreams(activator: str, host_port: int | None) -> list[dict[str, str]]:
    # The activator is always the last upstream: a refused dial to the container falls through to it.
    container = [{"dial": f"127.0.0.1:{host_port}"}] if host_port is not None else []
    return [*container, {"dial": activator}]


def site_route(site: SiteConfig, activator: str, host_port: int | None) -> dict[str, Any]:
    return {
        "@id": f"{ROUTE_PREFIX}{site.name}",
        "match": [{"host": list(site.hosts)}],
        "handle": [
            {
                "@id": proxy_id(site.name),
                "handler": "reverse_proxy",
                "upstreams": _upstreams(activator, host_port),
                "load_balancing": {
                    "selection_policy": {"policy": "first"},
                    "try_duration": "5s",
                    "try_interval": "5ms",
                },
                "health_checks": {"passive": {"fail_duration": FAIL_DURATION, "max_fails": 1}},
                # Caddy 2.6 closes the body before retrying on the next upstream; buffering keeps a POST whole
                # when a crashed container's dial fails over to the activator (DESIGN: known traps).
                "buffer_requests": True,
                # No flush_interval: on Caddy 2.6, -1 makes every config reload cancel in-flight requests.
            }
        ],
        "terminal": True,
    }


def admin_config(caddy: CaddyConfig) -> dict[str, Any]:
    admin: dict[str, Any] = {"listen": caddy.admin, "config": {"persist": False}}
    if caddy.admin.startswith("unix//"):
        # Over a unix socket our client says "Host: localhost"; Caddy checks it against the allowed origins.
        admin["origins"] = ["localhost"]
    return admin


def render(config: Config, running: Mapping[str, int]) -> dict[str, Any]:
    """The whole Caddy config: one route per site (to its container when running), then a 404."""
    activator = str(config.server.listen)
    routes = [site_route(site, activator, running.get(site.name)) for site in config.sites]
    routes.append({"handle": [{"handler": "static_response", "status_code": 404, "body": "unknown host\n"}]})
    server: dict[str, Any] = {
        "listen": [config.caddy.http_listen],
        "routes": routes,
        # Every host's access log goes to one logger (logger_names would need each Host exactly, port and all).
        "logs": {"default_logger_name": ACCESS_LOGGER},
    }
    if not config.caddy.automatic_https:
        server["automatic_https"] = {"disable": True}
    access = f"http.log.access.{ACCESS_LOGGER}"
    return {
        "admin": admin_config(config.caddy),
        "storage": {"module": "file_system", "root": str(config.server.state_dir / "caddy")},
        "logging": {
            "logs": {
                "default": {"exclude": [access]},
                ACCESS_LOGGER: {
                    # Caddy 2.6 dials this when the config loads (so the listener must be up first), and
                    # after a failed write redials at most every 10 s, writing to stderr meanwhile.
                    "writer": {"output": "net", "address": str(config.server.access_log_listen)},
                    "encoder": {"format": "json"},
                    "include": [access],
                },
            }
        },
        "apps": {"http": {"servers": {SERVER: server}}},
    }


class CaddyAdmin:
    """A client of Caddy's admin API, over a unix socket ("unix//path") or TCP ("host:port")."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._session: aiohttp.ClientSession | None = None

    @property
    def socket_path(self) -> Path | None:
        return Path(self.address.removeprefix("unix/")) if self.address.startswith("unix//") else None

    async def open(self) -> None:
        path = self.socket_path
        if path is not None:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(path))
            self._base = "http://localhost"
        else:
            connector = aiohttp.TCPConnector()
            self._base = f"http://{self.address}"
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body: object = None) -> Any:
        assert self._session is not None, "CaddyAdmin.open() first"
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        async with self._session.request(method, self._base + path, data=data, headers=headers) as resp:
            text = await resp.read()
            if resp.status >= 400:
                raise CaddyError(f"{method} {path}: {resp.status} {text.decode(errors='replace').strip()}")
            return orjson.loads(text) if text.strip() else None

    async def alive(self) -> bool:
        try:
            await self.request("GET", "/config/")
        except (aiohttp.ClientError, CaddyError, OSError):
            return False
        return True

    async def wait_alive(self, limit: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not await self.alive():
            if loop.time() > deadline:
                raise CaddyError(f"Caddy's admin API at {self.address} did not answer within {limit:g}s")
            await asyncio.sleep(0.05)

    async def load(self, config: Mapping[str, Any]) -> None:
        await self.request("POST", "/load", config)

    async def upstreams(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/reverse_proxy/upstreams") or [])


class CaddyRouter:
    """Router on Caddy's admin API: a whole config with /load, one site's upstreams with a PATCH, and the
    routes read back from the running config."""

    def __init__(self, admin: CaddyAdmin, config: Config) -> None:
        self.admin = admin
        self.config = config
        self.activator = str(config.server.listen)

    async def load(self, routes: Mapping[str, int | None]) -> None:
        await self.admin.load(render(self.config, {s: p for s, p in routes.items() if p is not None}))

    async def route(self, site: str, host_port: int | None) -> None:
        await self.admin.request("PATCH", f"/id/{proxy_id(site)}/upstreams", _upstreams(self.activator, host_port))

    async def routes(self) -> Mapping[str, int | None]:
        found: dict[str, int | None] = {}
        try:
            routes = await self.admin.request("GET", f"/config/apps/http/servers/{SERVER}/routes")
        except CaddyError:  # no such server: Caddy holds none of our config
            return found
        for route in routes or []:
            name = str(route.get("@id", "")).removeprefix(ROUTE_PREFIX)
            handle = route.get("handle") or [{}]
            dials = [u.get("dial", "") for u in handle[0].get("upstreams") or []]
            if not route.get("@id", "").startswith(ROUTE_PREFIX) or not dials:
                continue
            first = dials[0]
            found[name] = None if first == self.activator else int(first.rpartition(":")[2])
        return found

    async def in_flight(self) -> Mapping[str, int]:
        return {u["address"]: int(u.get("num_requests") or 0) for u in await self.admin.upstreams()}


class CaddyProcess:
    """Runs the caddy binary detached, so that sites keep serving while the activator restarts or is down."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.system_dir = config.server.system_dir

    def start(self) -> int:
        admin = self.config.caddy.admin
        if admin.startswith("unix//"):
            Path(admin.removeprefix("unix/")).parent.mkdir(parents=True, exist_ok=True)
        (self.system_dir / "logs").mkdir(parents=True, exist_ok=True)
        bootstrap = self.system_dir / "caddy-bootstrap.json"
        # Only the admin listener: the real config arrives through /load.
        bootstrap.write_bytes(orjson.dumps({"admin": admin_config(self.config.caddy)}))
        env = dict(
            os.environ,
            XDG_DATA_HOME=str(self.config.server.state_dir / "caddy"),
            XDG_CONFIG_HOME=str(self.config.server.state_dir / "caddy"),
        )
        with open(self.system_dir / "logs" / "caddy.log", "ab") as out:
            proc = subprocess.Popen(
                [
                    self.config.caddy.binary,
                    "run",
                    "--config",
                    str(bootstrap),
                    "--pidfile",
                    str(self.system_dir / "caddy.pid"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,  # not in our process group: a Ctrl-C or kill of dialup leaves it serving
            )
        log.info("started caddy (pid %d), admin at %s", proc.pid, admin)
        return proc.pid
