"""Caddy's admin API: the client, and the Router on it (whole configs, one site's upstreams, routes read back)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from activator.config import Config
from activator.model import ActivitySource
from activator.proxy.accesslog import ACCESS_LOGGER
from activator.proxy.render import (
    ROUTE_PREFIX,
    SERVER,
    access_logger,
    file_upstream,
    metrics_config,
    render,
    route_address,
    server,
)
from activator.proxy.routefiles import RouteFiles

log = logging.getLogger(__name__)


class CaddyError(Exception):
    pass


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

    async def read(self, path: str) -> bytes:
        """A GET of a body that is not JSON (/metrics), as it is: no compression asked for over a local socket."""
        assert self._session is not None, "CaddyAdmin.open() first"
        async with self._session.get(self._base + path, headers={"Accept-Encoding": "identity"}) as resp:
            body = await resp.read()
            if resp.status >= 400:
                raise CaddyError(f"GET {path}: {resp.status} {body[:200].decode(errors='replace').strip()}")
            return body

    async def alive(self) -> bool:
        try:
            await self.request("GET", "/config/admin")  # small, whatever else the config holds
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
    """Router on Caddy: a site's route is its route file (proxy/routefiles.py), which Caddy reads at each
    request; the config, which names the files, changes only with dialup's config. A Caddy that dialup manages
    gets the whole config with /load, and only if it differs from what it has (a reload of an unchanged config
    would still cut short the requests waiting in Caddy's retries). A Caddy that the operator runs
    (manage = false) gets dialup's own server and, for activity, either its access logger or per-host metrics
    (apps.http.metrics.per_host), and nothing else: its other sites are left alone."""

    def __init__(self, admin: CaddyAdmin, config: Config) -> None:
        self.admin = admin
        self.config = config
        self.activator = str(config.server.listen)
        self.files = RouteFiles(config.server.routes_dir)
        self._sites = {file_upstream(config.server.routes_dir, s.name): s.name for s in config.container_sites}
        # Called before every change to Caddy's config: a change is a reload, which starts Caddy's request
        # counters from zero, so what they counted since the last read is read first (activator/proxy/metrics.py).
        self.before_change: Callable[[], Awaitable[object]] | None = None

    def reconfigure(self, config: Config) -> None:
        """The config as reloaded: the next load() gives Caddy its routes."""
        self.config = config
        self._sites = {file_upstream(config.server.routes_dir, s.name): s.name for s in config.container_sites}

    async def forget(self, site: str) -> None:
        """A site the config lost: its route file goes (Caddy no longer names it)."""
        await asyncio.to_thread(self.files.remove, site)

    async def _changing(self) -> None:
        if self.before_change is not None:
            await self.before_change()

    async def load(self, routes: Mapping[str, int | None]) -> None:
        for site, host_port in routes.items():  # first: the config names them
            await self.route(site, host_port)
        if self.config.caddy.manage:
            wanted = render(self.config)
            if await self.admin.request("GET", "/config/") != wanted:
                await self._changing()
                await self.admin.load(wanted)
            return
        await self._changing()
        if self.config.server.activity is ActivitySource.LOG:
            await self._set(f"/config/logging/logs/{ACCESS_LOGGER}", access_logger(self.config))
        else:  # per-host counters for the whole http app (the one setting dialup changes outside its server)
            for key, value in metrics_config().items():
                await self._set(f"/config/apps/http/metrics/{key}", value)
        await self._set(f"/config/apps/http/servers/{SERVER}", server(self.config))

    async def _set(self, path: str, value: Any) -> None:
        """Set one value of Caddy's config, unless it is so already. Objects above it that are missing are made
        (with only this inside); one that exists is never replaced, so nothing beside the value changes."""
        if await self._get(path) == value:
            return
        parent, _, key = path.rpartition("/")
        while parent != "/config" and await self._get(parent) is None:
            value, (parent, _, key) = {key: value}, parent.rpartition("/")
        await self.admin.request("POST", f"{parent}/{key}", value)

    async def _get(self, path: str) -> Any:
        try:
            return await self.admin.request("GET", path)
        except CaddyError:  # Caddy answers a path that does not exist with an error
            return None

    async def route(self, site: str, host_port: int | None) -> None:
        await asyncio.to_thread(self.files.write, site, route_address(self.activator, host_port))

    async def routes(self) -> Mapping[str, int | None]:
        """The route of each site that Caddy has a route for (absent: Caddy lacks it, or its file is wrong)."""
        present = {
            str(route.get("@id", "")).removeprefix(ROUTE_PREFIX)
            for route in await self._get(f"/config/apps/http/servers/{SERVER}/routes") or []
            if str(route.get("@id", "")).startswith(ROUTE_PREFIX)
        }
        # A replica has no route of its own: its file is the second upstream of its site's route.
        present |= {s.name for s in self.config.container_sites if s.replica_of in present}
        found: dict[str, int | None] = {}
        for site in present:
            address = await asyncio.to_thread(self.files.read, site)
            if address == self.activator:
                found[site] = None
            elif address is not None and address.startswith("127.0.0.1:") and address[10:].isdigit():
                found[site] = int(address[10:])
        return found

    async def in_flight(self) -> Mapping[str, int]:
        """Requests open through each site's route (Caddy counts them by its file upstream), by site."""
        counts: dict[str, int] = {}
        for upstream in await self.admin.upstreams():
            site = self._sites.get(upstream["address"])
            if site is not None:
                counts[site] = counts.get(site, 0) + int(upstream.get("num_requests") or 0)
        return counts
