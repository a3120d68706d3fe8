"""What marks a container as ours: the labels every container carries, and the names of sites', holders' and the
deployment's network."""

from __future__ import annotations

LABEL_DEPLOYMENT = "dialup.deployment"
LABEL_SITE = "dialup.site"
LABEL_ROLE = "dialup.role"


def container_name(deployment: str, site: str) -> str:
    return f"dialup-{deployment}-{site}"


def holder_name(deployment: str, site: str) -> str:
    return f"dialup-{deployment}-{site}.holder"  # "." never occurs in a site name: no clash with a site's own


def network_name(deployment: str) -> str:
    return f"dialup-{deployment}"  # the deployment's bridge network (runtime/network.py)
