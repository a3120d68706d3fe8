"""The container engine: the docker SDK, always called from worker threads, never on the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, TypeVar

import docker
import docker.errors
from docker.types import Mount, Ulimit

from activator.config import HolderConfig, SiteConfig
from activator.errors import ContainerExists, ContainerGone, ImageMissing, RuntimeUnavailable, StartFailed
from activator.metrics import DOCKER_CALLS
from activator.model import Container, ContainerEvent, MiB
from activator.runtime.events import EventStream
from activator.runtime.holder_image import ensure_image
from activator.runtime.inspection import _container
from activator.runtime.labels import (
    LABEL_DEPLOYMENT,
    LABEL_RELEASE,
    LABEL_ROLE,
    LABEL_SITE,
    container_name,
    holder_name,
    network_name,
)
from activator.runtime.network import ensure as ensure_bridge

log = logging.getLogger(__name__)
T = TypeVar("T")

# Open files per container (DESIGN: security by default; the pids limit comes with the site's kind).
NOFILE = 1024
# A holder is docker-init and busybox sleep: under 1 MiB in use. The limits only stop it from ever growing.
HOLDER_MEMORY = 16 * MiB
HOLDER_PIDS = 4
# Stops get their own threads: a stop holds its thread for up to the grace period (seconds), and a few stops at
# once (an eviction, `dialup down`, the reaper) must never make a start, create, inspect or pause queue behind
# them. Bounded, so a burst of stops waits its turn instead of making a thread each.
STOP_WORKERS = 4


def _hardened(pids: int, nofile: int) -> dict[str, Any]:
    """What every container gets (DESIGN: security by default)."""
    return {
        "init": True,  # signals and zombie reaping work, so stops take milliseconds
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "pids_limit": pids,
        "ulimits": [Ulimit(name="nofile", soft=nofile, hard=nofile)],
    }


def _refused(site: str, what: str, exc: docker.errors.APIError) -> StartFailed:
    """The engine refused: its message for the operator, only what it refused for a client."""
    return StartFailed(site, f"docker could not {what}: {exc.explanation or exc}", f"docker could not {what}")


class DockerRuntime:
    """ContainerRuntime on the Docker Engine. Every container carries the deployment and site labels."""

    def __init__(self, deployment: str, *, workers: int = 8) -> None:
        self.deployment = deployment
        self.network = network_name(deployment)  # holders and plain sites are made on it (runtime/network.py)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker")
        self._stop_pool = ThreadPoolExecutor(max_workers=STOP_WORKERS, thread_name_prefix="docker-stop")
        self._client: docker.DockerClient | None = None
        self._stream: EventStream | None = None

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        def connect() -> docker.DockerClient:
            client = docker.from_env(timeout=60)
            client.ping()
            return client

        try:
            self._client = await self._run("ping", connect)
        except docker.errors.DockerException as exc:
            raise RuntimeUnavailable(f"cannot reach the Docker Engine: {exc}") from exc

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._stop_pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    async def _run(self, op: str, fn: Callable[..., T], *args: Any, pool: ThreadPoolExecutor | None = None) -> T:
        DOCKER_CALLS.labels(op).inc()
        return await asyncio.get_running_loop().run_in_executor(pool or self._executor, fn, *args)

    @property
    def client(self) -> docker.DockerClient:
        assert self._client is not None, "DockerRuntime.open() first"
        return self._client

    def labels(self, site: str, role: str = "site") -> dict[str, str]:
        return {LABEL_DEPLOYMENT: self.deployment, LABEL_SITE: site, LABEL_ROLE: role}

    # -- ContainerRuntime ---------------------------------------------------------------------

    async def ensure_network(self) -> None:
        """The deployment's isolating bridge network: created, or adopted if it is there (runtime/network.py)."""
        await self._run("network", ensure_bridge, self.client.api, self.network, self.deployment)

    async def find(self, site: SiteConfig) -> Container | None:
        return await self._inspect(container_name(self.deployment, site.name), site.port)

    async def find_holder(self, site: SiteConfig) -> Container | None:
        return await self._inspect(holder_name(self.deployment, site.name), site.port)

    async def _inspect(self, name: str, port: int) -> Container | None:
        def find() -> Container | None:
            try:
                attrs = self.client.api.inspect_container(name)
            except docker.errors.NotFound:
                return None
            return _container(attrs, port, self.network)

        return await self._run("inspect", find)

    async def create(self, site: SiteConfig, holder_id: str | None = None, name: str | None = None) -> Container:
        """The site's container: in the holder's network namespace when holder_id is given, else with its own
        network and a port the engine picks on 127.0.0.1."""
        network: dict[str, Any] = (
            {"network_mode": f"container:{holder_id}"}
            if holder_id
            # None: the engine picks a free port on 127.0.0.1.
            else {"network": self.network, "ports": {f"{site.port}/tcp": ("127.0.0.1", None)}}
        )
        name = name or container_name(self.deployment, site.name)

        def create() -> Container:
            try:
                made = self.client.containers.create(
                    site.run_image,
                    command=list(site.command) if site.command is not None else None,
                    name=name,
                    labels=self.labels(site.name),
                    environment=dict(site.env),
                    mem_limit=site.memory_limit,
                    memswap_limit=site.memory_limit,  # no swap: the limit is the limit
                    nano_cpus=int(site.cpu_quota * 1e9),
                    cpu_shares=site.cpu_weight,
                    cap_add=list(site.cap_add) or None,
                    read_only=site.read_only,
                    tmpfs={"/tmp": "rw,nosuid,nodev,size=64m"} if site.read_only else None,
                    mounts=[Mount(inside, host, type="bind", read_only=ro) for host, inside, ro in site.mounts],
                    user=site.user or None,
                    working_dir=site.workdir or None,
                    detach=True,
                    **network,
                    **_hardened(site.pids_limit, NOFILE),
                )
            except docker.errors.ImageNotFound:
                raise ImageMissing(site.name, site.run_image) from None
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # the only conflict a create meets: the name is taken
                    raise ContainerExists(site.name, name) from None
                raise _refused(site.name, "create it", exc) from None
            return Container(
                id=made.id or "", status="created", site=site.name, network_mode=network.get("network_mode", "")
            )

        return await self._run("create", create)

    async def create_holder(self, site: SiteConfig, image: str, name: str | None = None) -> Container:
        """The site's network holder (created, not started): it owns the namespace and publishes the port."""

        def create() -> Container:
            try:
                made = self.client.api.create_container(
                    image,
                    name=name or holder_name(self.deployment, site.name),
                    labels=self.labels(site.name, "holder"),
                    ports=[site.port],
                    host_config=self.client.api.create_host_config(
                        network_mode=self.network,
                        port_bindings={site.port: ("127.0.0.1", None)},
                        mem_limit=HOLDER_MEMORY,
                        memswap_limit=HOLDER_MEMORY,
                        read_only=True,
                        **_hardened(HOLDER_PIDS, 64),
                    ),
                )
            except docker.errors.ImageNotFound:
                raise ImageMissing(site.name, image) from None
            except docker.errors.APIError as exc:
                raise _refused(site.name, "create its holder", exc) from None
            return Container(id=made["Id"], status="created", site=site.name, role="holder", publishes=site.port)

        return await self._run("create", create)

    async def ensure_holder_image(self, holder: HolderConfig) -> bool:
        """Build the holders' image from the local busybox unless the engine has it. True if it was built."""
        return await self._run("build", ensure_image, self.client.api, holder)

    async def start(self, site: SiteConfig, container_id: str) -> Container:
        def start() -> Container:
            try:
                self.client.api.start(container_id)
                return _container(self.client.api.inspect_container(container_id), site.port, self.network)
            except docker.errors.NotFound:
                raise ContainerGone(container_id) from None
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "removal" in str(exc.explanation):  # being removed right now
                    raise ContainerGone(container_id) from None
                raise _refused(site.name, "start it", exc) from None

        return await self._run("start", start)

    async def stop(self, container_id: str, grace: float) -> None:
        def stop() -> None:
            # The engine takes whole seconds; round a sub-second grace up rather than to "kill at once".
            self.client.api.stop(container_id, timeout=max(0, int(-(-grace // 1))))

        await self._run("stop", stop, pool=self._stop_pool)

    async def pause(self, container_id: str) -> None:
        await self._run("pause", lambda: self.client.api.pause(container_id))

    async def unpause(self, container_id: str) -> None:
        def unpause() -> None:
            try:
                self.client.api.unpause(container_id)
            except docker.errors.NotFound:
                raise ContainerGone(container_id) from None

        await self._run("unpause", unpause)

    async def set_cpu_shares(self, container_id: str, shares: int) -> None:
        await self._run("update", lambda: self.client.api.update_container(container_id, cpu_shares=shares))

    async def prune_own_images(self, keep: list[str]) -> tuple[int, int]:
        """Remove images labelled with this deployment that no container and no `keep` reference uses.
        Never touches an image the project did not make. Returns (images removed, bytes freed)."""

        def prune() -> tuple[int, int]:
            api = self.client.api
            own = api.images(filters={"label": f"{LABEL_DEPLOYMENT}={self.deployment}"})
            used = {c["ImageID"] for c in api.containers(all=True)}
            for ref in keep:
                with suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                    used.add(api.inspect_image(ref)["Id"])  # type: ignore[no-untyped-call]
            removed = freed = 0
            for image in own:
                if image["Id"] in used or LABEL_RELEASE in (image.get("Labels") or {}):
                    continue  # in use, or a release's (kept for rollbacks; the deployer removes the old ones)
                try:
                    api.remove_image(image["Id"], force=True)  # force: every tag of it
                except docker.errors.APIError as exc:
                    log.warning("could not remove image %s: %s", image["Id"][:19], exc)
                    continue
                removed, freed = removed + 1, freed + int(image.get("Size") or 0)
            return removed, freed

        return await self._run("prune", prune)

    async def remove_image(self, tag: str) -> None:
        """A release's image (builds/deployer.py removes those past keep_releases); gone already is fine."""

        def remove() -> None:
            with suppress(docker.errors.ImageNotFound):
                self.client.api.remove_image(tag)

        await self._run("remove_image", remove)

    async def rename(self, container_id: str, name: str) -> None:
        await self._run("rename", lambda: self.client.api.rename(container_id, name))

    async def remove(self, container_id: str) -> None:
        await self._run("remove", lambda: self.client.api.remove_container(container_id, force=True))

    async def list_deployment(self) -> list[Container]:
        """Every container of this deployment (sites and their holders), whatever its state."""

        def listing() -> list[Container]:
            found = self.client.api.containers(all=True, filters={"label": f"{LABEL_DEPLOYMENT}={self.deployment}"})
            return [
                Container(
                    id=c["Id"],
                    status=c.get("State", ""),
                    site=c["Labels"].get(LABEL_SITE, ""),
                    role=c["Labels"].get(LABEL_ROLE, "site"),
                    name=(c.get("Names") or ["/"])[0].lstrip("/"),
                )
                for c in found
            ]

        return await self._run("list", listing)

    async def last_log_line(self, container_id: str) -> str:
        def tail() -> str:
            raw = self.client.api.logs(container_id, tail=5)
            lines = [line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip()]
            return lines[-1][:200] if lines else ""

        try:
            return await self._run("logs", tail)
        except docker.errors.DockerException:
            return ""

    def watch(self, on_event: Callable[[ContainerEvent], None]) -> None:
        """Follow the engine's events for this deployment in a thread; reconnect (losing none, repeating none) if it
        breaks."""
        self._stream = EventStream(self.client, f"{LABEL_DEPLOYMENT}={self.deployment}", on_event)
