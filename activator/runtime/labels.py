"""What marks a container as ours: the labels every container carries, and the names of sites', holders' and the
deployment's network."""

from __future__ import annotations

LABEL_DEPLOYMENT = "dialup.deployment"
LABEL_SITE = "dialup.site"
LABEL_ROLE = "dialup.role"
LABEL_RELEASE = "dialup.release"  # on a release's image: the deployer keeps it, or removes it (keep_releases)


def container_name(deployment: str, site: str) -> str:
    return f"dialup-{deployment}-{site}"


def holder_name(deployment: str, site: str) -> str:
    return f"dialup-{deployment}-{site}.holder"  # "." never occurs in a site name: no clash with a site's own


def network_name(deployment: str) -> str:
    return f"dialup-{deployment}"  # the deployment's bridge network (runtime/network.py)


def staging_name(name: str) -> str:
    """A release's container (or holder) while it starts beside the live one; renamed once the old is gone."""
    return f"{name}.next"


def retired_name(name: str) -> str:
    """An old container (or holder) that a swap replaced, while it finishes what it serves."""
    return f"{name}.old"
