"""What `dialup status` and the admin API's /status show: one row type for a site, filled from the running
activator, or (while it is down) from Docker and the event log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from activator.config import Config, SiteConfig
from activator.interfaces import ContainerRuntime
from activator.model import Container, Network, SiteState
from activator.store import SiteCounts, Store
from activator.supervisor import Supervisor
from activator.supervisor.limiter import shown
from activator.supervisor.routes import Unknown
from activator.supervisor.site import Site


class SiteRow(TypedDict):
    name: str
    # stopped, starting, running, draining, paused, failing (or, read from Docker: missing); "files" for a
    # static site served from its published files (no container)
    state: str
    strategy: str
    network: str
    container_id: str | None
    holder_id: str | None
    host_port: int | None
    route: str | None  # what Caddy routes the site to, as last read back from it: "activator" or "127.0.0.1:PORT"
    routed: bool | None  # Caddy routes it to its running container
    requests_per_minute: float | None
    last_request_age_s: float | None
    idle_s: float | None  # what the idle policy counts: since the last request, or the start or wake if later
    in_flight: int | None
    waiting: int | None
    starts: int
    wakes: int
    last_start_ms: int | None
    crashes: int
    memory_used: int | None
    memory_limit: int
    holder_memory: int | None
    cpus: float
    cpu_shares: int
    last_failure: str
    release: str | None  # the live release (sites built from source)
    deploy: str | None  # what a deploy under way does: queued, building, swapping
    instances: int | None  # a scalable site's instances serving now (1 or 2)
    scale_rate: float | None  # ... and the requests per minute over its stable window, which drive its scaling
    replica_of: str | None  # a second instance's site
    rate_limit: str | None  # the limit in force ("10/s (burst 10)"; tighter while the host is congested)
    rate_limited: bool | None  # its route is on the activator's limiter now
    refused: int | None  # requests answered 429 since the activator started


def _row(cfg: SiteConfig, counts: SiteCounts, **live: Any) -> SiteRow:
    """A row with what the config and the event log say; `live` adds (or overrides) what is known now."""
    row = SiteRow(
        name=cfg.name,
        state="stopped",
        strategy=cfg.strategy.value,
        network=cfg.network.value,
        container_id=None,
        holder_id=None,
        host_port=None,
        route=None,
        routed=None,
        requests_per_minute=None,
        last_request_age_s=None,
        idle_s=None,
        in_flight=None,
        waiting=None,
        starts=counts.starts,
        wakes=counts.wakes,
        last_start_ms=round(counts.last_start_ms) if counts.last_start_ms is not None else None,
        crashes=counts.crashes,
        memory_used=None,
        memory_limit=cfg.memory_limit,
        holder_memory=None,
        cpus=cfg.cpu_quota,
        cpu_shares=cfg.cpu_weight,
        last_failure="",
        release=None,
        deploy=None,
        instances=None,
        scale_rate=None,
        replica_of=cfg.replica_of or None,
        rate_limit=shown(cfg.rate_limit) if cfg.rate_limit else None,
        rate_limited=None,
        refused=None,
    )
    row.update(live)  # type: ignore[typeddict-item]
    return row


def live_row(
    sup: Supervisor, site: Site, counts: SiteCounts, in_flight: Mapping[str, int], used: int | None
) -> SiteRow:
    now = sup.clock.monotonic()
    last = sup.activity.last_request(site.name)
    actual = sup.routes.actual(site.name)
    holder = sup.holders.current(site)
    failing = site.state is SiteState.STOPPED and sup.lifecycle.failing(site)
    limit = sup.limiter.limit(site)
    scalable = sup.scaler.replica(site) is not None
    return _row(
        site.config,
        counts,
        state="failing" if failing else site.state.value,
        container_id=site.container_id[:12] if site.container_id else None,
        holder_id=holder.id[:12] if holder else None,
        host_port=site.host_port,
        route=None if isinstance(actual, Unknown) else "activator" if actual is None else f"127.0.0.1:{actual}",
        routed=site.state is SiteState.RUNNING and sup.routes.routed(site.name),
        requests_per_minute=round(sup.activity.per_minute(site.name), 2),
        last_request_age_s=round(now - last, 1) if last is not None else None,
        idle_s=round(now - sup.activity.last_activity(site), 1) if site.up_since else None,
        in_flight=site.open_requests(in_flight),
        waiting=site.demand.waiting,
        memory_used=used,
        holder_memory=sup.holders.memory_of(site),
        last_failure=site.failure,
        instances=sup.scaler.instances(site) if scalable else None,
        scale_rate=round(sup.scaler.rate(site), 2) if scalable else None,
        rate_limit=shown(limit) if limit else None,
        rate_limited=sup.routes.held(site.name) if limit else None,
        refused=sup.limiter.refused.get(site.name, 0) if limit else None,
    )


async def offline_row(runtime: ContainerRuntime, site: SiteConfig, counts: SiteCounts) -> SiteRow:
    """What Docker and the event log tell while the activator is down (no rates, no routes)."""
    found = await runtime.find(site)
    holder = await runtime.find_holder(site) if site.network is Network.HOLDER else None
    return _row(
        site,
        counts,
        state=_docker_state(found),
        container_id=found.id[:12] if found else None,
        holder_id=holder.id[:12] if holder and holder.running else None,
        host_port=(holder or found).host_port if found and found.running else None,
    )


def files_row(cfg: SiteConfig, counts: SiteCounts, release: str | None, deploy: str | None = None) -> SiteRow:
    """A static site served from its files: no container, no memory held, nothing to start."""
    return _row(
        cfg, counts, state="files", network="-", route="files", memory_limit=0, cpus=0.0, cpu_shares=0,
        release=release, deploy=deploy,
    )  # fmt: skip


def _docker_state(found: Container | None) -> str:
    if found is None:
        return "missing"
    return {"running": "running", "paused": "paused"}.get(found.status, "stopped")


def budget(config: Config, rows: list[SiteRow], holders: int) -> dict[str, int]:
    """The memory budget: the limits of running and paused sites (starting and draining ones too), plus
    what the holders use."""
    holding = {SiteState.RUNNING, SiteState.PAUSED, SiteState.STARTING, SiteState.DRAINING}
    used = sum(row["memory_limit"] for row in rows if row["state"] in holding) + holders
    return {"used": used, "holders": holders, "total": config.budget.memory}


async def offline_status(
    config: Config, runtime: ContainerRuntime, store: Store, live: Mapping[str, str]
) -> dict[str, Any]:
    """`live`: each site's live release id."""
    counts = await store.site_counts()
    rows = []
    for site in config.sites:
        site_counts = counts.get(site.name, SiteCounts())
        if site.serves_files:
            rows.append(files_row(site, site_counts, live.get(site.name)))
        else:
            row = await offline_row(runtime, site, site_counts)
            row["release"] = live.get(site.name)
            rows.append(row)
    return {"budget": budget(config, rows, 0), "host": None, "sites": rows}
