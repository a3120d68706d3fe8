"""How the engine's answer about one container (an inspect) is read: its state, exit code, published port, labels."""

from __future__ import annotations

from typing import Any

from activator.model import Container
from activator.runtime.labels import LABEL_ROLE, LABEL_SITE


def _published_port(attrs: dict[str, Any], port: int) -> int | None:
    bindings = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    return None


def _container(attrs: dict[str, Any], port: int, network: str | None = None) -> Container:
    """The container the engine describes; `network`: the deployment's, to tell whether it is on it."""
    state = attrs.get("State") or {}
    status = str(state.get("Status") or "")
    alive = status in ("running", "paused")
    host = attrs.get("HostConfig") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    bound = [int(key.partition("/")[0]) for key in (host.get("PortBindings") or {})]
    mode = str(host.get("NetworkMode") or "")
    return Container(
        id=attrs["Id"],
        status=status,
        host_port=_published_port(attrs, port) if alive else None,
        exit_code=None if alive else state.get("ExitCode"),
        site=labels.get(LABEL_SITE, ""),
        role=labels.get(LABEL_ROLE, "site"),
        network_mode=mode,
        publishes=bound[0] if bound else None,
        # In a holder's namespace, it is where its holder is (the holder's own inspect tells).
        isolated=network is None or mode == network or mode.startswith("container:"),
    )
