"""The Node.js base image made on this machine (no registry): node and npm run in it, offline, and a second
call reuses it. The first run on a machine builds it (a few minutes); later runs find it."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import pytest

from activator.builds.base_image import ensure_node_base, node_base_tag

LABELS = {"dialup.test": "base-image"}
PACKAGE = {"name": "hello", "version": "1.0.0", "private": True, "scripts": {"start": "node server.js"}}
LOCK = {
    "name": "hello",
    "version": "1.0.0",
    "lockfileVersion": 3,
    "requires": True,
    "packages": {"": {"name": "hello", "version": "1.0.0"}},
}
# What the node recipe runs: a clean install of a lockfile with no dependencies, then `npm start`.
SCRIPT = "cp -r /src /tmp/app && cd /tmp/app && npm ci --omit=dev --no-audit --no-fund --offline && npm start"


def run(
    client: docker.DockerClient, tag: str, command: list[str], volumes: dict[str, dict[str, str]] | None = None
) -> str:
    # No network: the image must work offline. remove=True removes the container on failure too.
    out = client.containers.run(tag, command, remove=True, labels=LABELS, network_mode="none", volumes=volumes)
    return bytes(out).decode()


@pytest.mark.timeout(1200)  # a first build downloads about 400 Debian packages
def test_node_base_image(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    first: list[str] = []
    tag = ensure_node_base(log=first.append)
    assert tag == node_base_tag()

    assert run(docker_client, tag, ["node", "-e", "console.log(process.version)"]).startswith("v")
    assert run(docker_client, tag, ["npm", "--version"]).strip()[0].isdigit()
    (tmp_path / "package.json").write_text(json.dumps(PACKAGE))
    (tmp_path / "package-lock.json").write_text(json.dumps(LOCK))
    (tmp_path / "server.js").write_text('console.log("started on", process.version)\n')
    volumes = {str(tmp_path): {"bind": "/src", "mode": "ro"}}
    assert "started on v" in run(docker_client, tag, ["sh", "-c", SCRIPT], volumes=volumes)

    labels = docker_client.images.get(tag).labels
    assert labels["dialup.base"] == "node"
    assert labels["dialup.recipe"] == tag.partition(":")[2]

    second: list[str] = []
    assert ensure_node_base(log=second.append) == tag
    assert len(second) == 1 and "reused" in second[0], second
