"""Adoption: a new activator takes over the containers it finds by label, restarting none."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from activator.errors import SiteUnavailable
from activator.interfaces import ContainerRuntime
from activator.model import EventKind, Network
from activator.runtime.labels import retired_name, staging_name
from activator.supervisor.containers import Containers
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site

log = logging.getLogger("activator.supervisor")
# A swap's new container before it took the site's name, or the old one it replaced (the live one has the name).
LEFT_BY_SWAPS = (staging_name(""), retired_name(""))

ADOPT_CONCURRENCY = 8  # creating and starting holders takes the engine a tenth of a second each


async def adopt(
    sites: Mapping[str, Site],
    runtime: ContainerRuntime,
    lifecycle: Lifecycle,
    holders: Holders,
    containers: Containers,
) -> None:
    """Take over the containers found by label, restarting none; create missing ones; remove orphans."""
    await runtime.ensure_network()  # first: every holder and plain site is made on it
    for found in await runtime.list_deployment():
        site = sites.get(found.site)
        staged = found.name.endswith(LEFT_BY_SWAPS)  # a swap that the activator's end cut short
        if site is None or staged or (found.role == "holder" and site.config.network is not Network.HOLDER):
            why = "left the config" if site is None else "was a swap cut short" if staged else "has network = plain"
            log.warning("removing %s %s: site %r %s", found.role, found.id[:12], found.site, why)
            await runtime.remove(found.id)
            await lifecycle.record(found.site, EventKind.REMOVED, "config", detail=f"{found.role} {why}")
    slots = asyncio.Semaphore(ADOPT_CONCURRENCY)

    async def one(site: Site) -> None:
        async with slots:
            await adopt_one(site, runtime, lifecycle, holders, containers)

    await asyncio.gather(*(one(site) for site in sites.values()))


async def adopt_one(
    site: Site, runtime: ContainerRuntime, lifecycle: Lifecycle, holders: Holders, containers: Containers
) -> None:
    """One site's containers taken over, or made (at startup, or for a site a reload added)."""
    try:
        await _adopt(site, runtime, lifecycle, holders, containers)
    except SiteUnavailable as exc:
        lifecycle.failed(site, exc.reason)
        log.error("site %s: %s", site.name, exc.reason)
        await lifecycle.record(site, EventKind.CREATE_FAILED, "startup", detail=exc.reason)


async def _adopt(
    site: Site, runtime: ContainerRuntime, lifecycle: Lifecycle, holders: Holders, containers: Containers
) -> None:
    cfg, holder, renewed = site.config, None, False
    if cfg.network is Network.HOLDER:
        before = await runtime.find_holder(cfg)
        holder = await holders.ensure(site)  # one found stopped on Docker's default bridge is made anew
        renewed = before is None or before.id != holder.id or not (before.running or before.paused)
    found = await runtime.find(cfg)
    if found is not None and Holders.joined(found) != (holder.id if holder else None):
        # It joined a holder that is gone, or the site's network setting changed: make it anew.
        await containers.replace(site, found, "its network changed")
        found = None
    elif found is not None and not found.isolated and not (found.running or found.paused):
        # Made on Docker's default bridge by a dialup from before isolation, and not serving: made anew on the
        # deployment's network. (A running one is left alone: adoption restarts nothing.)
        await containers.replace(site, found, "it is on Docker's default bridge, not the deployment's network")
        found = None
    elif found is not None and renewed and (found.running or found.paused):
        # Its holder was restarted: it is cut off in the old namespace. Stopped, it joins the new one on start.
        await containers.stop_stranded(site, found)
        found = await runtime.find(cfg)
    if found is None:
        if not cfg.run_image:
            log.info("site %s: no release yet: its container is made when it is deployed", cfg.name)
            return
        await containers.create(site, holder.id if holder else None, "startup")
        return
    lifecycle.container(site, found.id, Holders.joined(found))
    if not (holder or found).isolated:
        log.warning(
            "site %s: running on Docker's default bridge, where other containers can reach it (made before sites"
            " were isolated); `dialup down` then `dialup up` makes it anew on the deployment's network",
            cfg.name,
        )
    port = holder.host_port if holder else found.host_port
    if (found.running or found.paused) and port is not None:
        lifecycle.adopted(site, port, running=found.running)
        log.info("site %s: adopted %s container %s", cfg.name, found.status, found.id[:12])
