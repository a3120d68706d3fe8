"""The deployment's own bridge network: every holder and every plain site's container is created on it.

On Docker's default bridge every container reaches every other, so one site could open connections to another's
app (its admin pages, its database port). On a bridge with inter-container communication off
(`com.docker.network.bridge.enable_icc=false`) the engine drops traffic between its containers, while the host,
and so Caddy and docker-proxy, still reaches their published ports, and containers still reach out (a bridge
masquerades by default). A site's container in a holder shares the holder's place on it.

These functions take the SDK's low-level client and block: DockerRuntime runs them in a worker thread."""

from __future__ import annotations

from typing import Any

import docker.errors

from activator.errors import NetworkUnfit, RuntimeUnavailable
from activator.runtime.labels import LABEL_DEPLOYMENT

ICC = "com.docker.network.bridge.enable_icc"
OPTIONS = {ICC: "false"}


def ensure(api: Any, name: str, deployment: str) -> None:
    """Create the network, or adopt the one of that name if it is this deployment's and isolating; else raise
    NetworkUnfit (never changed or removed here: containers may be on it)."""
    try:
        found = api.inspect_network(name)
    except docker.errors.NotFound:
        found = _create(api, name, deployment)
    problem = unfit(found, deployment)
    if problem:
        raise NetworkUnfit(name, problem)


def _create(api: Any, name: str, deployment: str) -> Any:
    try:
        api.create_network(
            name, driver="bridge", options=OPTIONS, labels={LABEL_DEPLOYMENT: deployment}, check_duplicate=True
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: made meanwhile (another `dialup` command): adopt it like any other
            raise RuntimeUnavailable(f"could not create the network {name}: {exc.explanation or exc}") from None
    return api.inspect_network(name)


def unfit(attrs: dict[str, Any], deployment: str) -> str:
    """What keeps an existing network from being this deployment's ("" if nothing)."""
    if (attrs.get("Labels") or {}).get(LABEL_DEPLOYMENT) != deployment:
        return f"it is not labelled {LABEL_DEPLOYMENT}={deployment}: dialup did not make it for this deployment"
    if attrs.get("Driver") != "bridge":
        return f"its driver is {attrs.get('Driver')!r}, not 'bridge'"
    if (attrs.get("Options") or {}).get(ICC) != "false":
        return f"its containers can reach each other (it lacks the option {ICC}=false)"
    return ""
