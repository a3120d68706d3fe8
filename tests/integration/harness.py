"""The integration harness: `dialup up` as a real process, with its own Caddy, ports and container label."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import docker

from activator.tomlwrite import toml_value

ROOT = Path(__file__).resolve().parents[2]
LABEL = "dialup.deployment"
PREFIX = "test-"
READY_LIMIT = 30.0
MADE: set[str] = set()  # deployments this test session made: only their containers are swept at its end


def free_port() -> int:
    """A free port below the kernel's ephemeral range: Docker hands out published ports from that range
    (and the kernel its outgoing ones), so a port taken there could be given to a container before Caddy or
    the activator binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    while True:
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


async def until(check: Any, limit: float = 10.0, what: str = "condition") -> Any:
    """Poll an async or plain callable until it returns something truthy, failing at the deadline."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.02)


class Deployment:
    """One activator with its own Caddy, ports, state directory and container label."""

    def __init__(self, client: docker.DockerClient, sites: list[dict[str, Any]], **server: Any) -> None:
        self.client = client
        self.name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
        MADE.add(self.name)
        self.dir = Path(tempfile.mkdtemp(prefix="du-", dir="/tmp"))  # short: unix socket paths are limited
        self.http_port = free_port()
        self.listen_port = free_port()
        self.log_port = free_port()
        self.sites = sites
        self.server = server
        self.config_path = self.dir / "dialup.toml"
        self.config_path.write_text(self.render(sites, **server))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "dialup.log"

    @property
    def admin_socket(self) -> Path:
        return self.dir / "state" / "system" / "dialup.sock"

    @property
    def caddy_socket(self) -> Path:
        return self.dir / "caddy.sock"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def render(self, sites: list[dict[str, Any]], **server: Any) -> str:
        server = dict(server)
        caddy = dict(server.pop("caddy", {}))  # keys for the [caddy] table (its listen and admin are the harness's)
        manage = caddy.pop("manage", True)
        tables = {
            key: server.pop(key)
            for key in ("budget", "thresholds", "defaults", "holder", "builds", "editor", "backups", "cost", "history")
            if key in server
        }
        lines = [
            "[server]",
            f'state_dir = "{self.dir / "state"}"',
            f'listen = "127.0.0.1:{self.listen_port}"',
            f'name = "{self.name}"',
            f'access_log_listen = "127.0.0.1:{self.log_port}"',
            *(f"{key} = {toml_value(value)}" for key, value in server.items()),
            "[caddy]",
            f'http_listen = "127.0.0.1:{self.http_port}"',
            f'admin = "unix/{self.caddy_socket}"',
            f"manage = {toml_value(manage)}",
            *(f"{key} = {toml_value(value)}" for key, value in caddy.items()),
        ]
        for table, values in tables.items():
            lines.append(f"[{table}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        for site in sites:
            lines.append("[[sites]]")
            for key, value in site.items():
                lines.append(f"{key} = {toml_value(value)}")
        return "\n".join(lines) + "\n"

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "activator.cli", *args, "-c", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def spawn(self) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            command = [sys.executable, "-m", "activator.cli", "up", "-c", str(self.config_path)]
            self.proc = subprocess.Popen(command, stdout=log, stderr=log, cwd=ROOT)

    async def start(self) -> None:
        self.spawn()
        await until(self._ready, READY_LIMIT, f"dialup up to be ready (log: {self.log_path})")

    async def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"dialup up exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
        try:
            await self.status()
            async with aiohttp.ClientSession() as s, s.get(self.url, headers={"Host": "ready.invalid"}) as r:
                return r.status == 404
        except (aiohttp.ClientError, OSError):
            return False

    async def admin(self, path: str) -> aiohttp.ClientResponse:
        connector = aiohttp.UnixConnector(path=str(self.admin_socket))
        async with aiohttp.ClientSession(connector=connector) as s, s.get(f"http://localhost{path}") as r:
            await r.read()
            return r

    async def admin_json(self, path: str) -> Any:
        connector = aiohttp.UnixConnector(path=str(self.admin_socket))
        async with aiohttp.ClientSession(connector=connector) as s, s.get(f"http://localhost{path}") as r:
            return await r.json()

    async def status(self) -> dict[str, dict[str, Any]]:
        body = await self.admin_json("/status")
        return {site["name"]: site for site in body["sites"]}

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over the series whose labels include `labels`."""
        connector = aiohttp.UnixConnector(path=str(self.admin_socket))
        async with aiohttp.ClientSession(connector=connector) as s, s.get("http://localhost/metrics") as r:
            text = await r.text()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            series, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def route_file(self, site: str) -> Path:
        """The file Caddy reads the site's route from at each request (activator/proxy/render.py)."""
        return self.dir / "state" / "routes" / site

    def route_on_activator(self, site: str) -> bool:
        return self.route_file(site).read_text().strip() == f"127.0.0.1:{self.listen_port}"

    async def wait_route_on_activator(self, site: str) -> None:
        """Until Caddy's route for the site goes to the activator (after a crash, stop or pause)."""
        await until(lambda: self.route_on_activator(site), 10, f"Caddy's route for {site} to go back to the activator")

    async def wait_routed(self, site: str) -> None:
        async def routed() -> bool:
            return bool((await self.status())[site]["routed"])

        await until(routed, 10, f"Caddy's route for {site} to switch to its container")

    def container_names(self) -> set[str]:
        """The names of this deployment's containers, from one listing (no inspect of each: one removed meanwhile
        would fail it)."""
        found = self.client.api.containers(all=True, filters={"label": f"{LABEL}={self.name}"})
        return {name.lstrip("/") for c in found for name in c["Names"]}

    def container(self, site: str) -> Any:
        return self.client.containers.get(f"dialup-{self.name}-{site}")

    def holder(self, site: str) -> Any:
        return self.client.containers.get(f"dialup-{self.name}-{site}.holder")

    def starts(self, site: str, since: float) -> int:
        """Start events Docker recorded for the site's container since `since` (unix time)."""
        events = self.client.events(
            since=since,
            until=time.time(),
            decode=True,
            filters={
                "type": "container",
                "event": "start",
                "label": [f"{LABEL}={self.name}", f"dialup.site={site}", "dialup.role=site"],
            },
        )
        return sum(1 for _ in events)

    async def events(self, site: str | None = None) -> list[dict[str, Any]]:
        """Event rows from the SQLite event log, oldest first."""
        import aiosqlite

        async with aiosqlite.connect(self.dir / "state" / "system" / "dialup.db") as db:
            db.row_factory = aiosqlite.Row
            query = "SELECT site, kind, cause, duration_ms, detail FROM events"
            args: tuple[str, ...] = ()
            if site:
                query, args = query + " WHERE site = ?", (site,)
            async with db.execute(query + " ORDER BY id", args) as cur:
                return [dict(row) for row in await cur.fetchall()]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        pidfile = self.dir / "state" / "system" / "caddy.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        for c in self.client.api.containers(all=True, filters={"label": f"{LABEL}={self.name}"}):
            with contextlib.suppress(docker.errors.NotFound):  # a swap's old container may be going meanwhile
                self.client.api.remove_container(c["Id"], force=True)
        for image in self.client.images.list(filters={"label": f"{LABEL}={self.name}"}):  # its builds' images
            self.client.images.remove(image.id, force=True)
        remove_networks(self.client, {self.name})
        if os.environ.get("DIALUP_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


def remove_networks(client: docker.DockerClient, deployments: set[str]) -> None:
    """The networks `dialup up` made for these deployments (after their containers are gone)."""
    for network in client.networks.list(filters={"label": LABEL}):
        if (network.attrs.get("Labels") or {}).get(LABEL) in deployments:
            try:
                network.remove()
            except docker.errors.NotFound:
                pass


def editor_table(**more: Any) -> dict[str, Any]:
    """An [editor] table on the deployment's Caddy: the editor at editor.localhost, previews at SITE-dev.localhost."""
    return {
        "host": "editor.localhost",
        "listen": f"127.0.0.1:{free_port()}",
        "preview_host": "{site}-dev.localhost",
        **more,
    }


def site(name: str, image: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "hosts": [f"{name}.test"], "image": image, "port": 8080, **extra}


def started_at(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"]["StartedAt"])


def docker_status(container: Any) -> str:
    container.reload()
    return str(container.status)
