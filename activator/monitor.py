"""Host and container figures every few seconds, threshold crossings, and the automated responses to them."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from activator.config import Config
from activator.core.thresholds import Crossing, Level, Limit, ThresholdWatch
from activator.interfaces import ContainerRuntime
from activator.metrics import MONITOR_TICK_SECONDS
from activator.model import EventKind, SiteState, Strategy
from activator.periodic import Periodic
from activator.runtime.cgroups import CgroupMemory
from activator.supervisor import Supervisor
from activator.tempfiles import clean_temp

log = logging.getLogger(__name__)

HOST = "(host)"  # the `site` of host-wide events
LOWERED_SHARES = 128  # CPU weight of non-persistent sites while the CPU is contended
MiB = 1 << 20


@dataclass(frozen=True)
class HostReading:
    memory: float  # percent of RAM in use
    cpu: float  # percent of all cores, since the last reading
    load: float  # 1-minute load average
    storage: float  # percent used of the state directory's file system
    memory_total: int = 0  # bytes of RAM


def read_host(state_dir: Path) -> HostReading:
    """Blocking but quick (/proc and statvfs): call it from a thread."""
    memory = psutil.virtual_memory()
    return HostReading(
        memory=memory.percent,
        memory_total=memory.total,
        cpu=psutil.cpu_percent(interval=None),
        load=os.getloadavg()[0],
        storage=psutil.disk_usage(str(state_dir)).percent,
    )


@dataclass
class Snapshot:
    """The last tick's figures, for status."""

    host: HostReading | None = None
    memory_used: dict[str, int] = field(default_factory=dict)  # per site, bytes
    levels: dict[str, str] = field(default_factory=dict)


class Monitor:
    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        runtime: ContainerRuntime,
        cgroups: CgroupMemory | None = None,
        read: Callable[[Path], HostReading] = read_host,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.runtime = runtime
        self.cgroups = cgroups or CgroupMemory()
        self.read = read
        self.watch = ThresholdWatch()
        self.snapshot = Snapshot()
        self.near_limit: set[str] = set()  # sites whose sustained near-limit episode was reported
        self.cpu_lowered = False
        # More storage responses (the backups' retention): each returns what it did. Set once, at wiring.
        self.storage_responses: list[Callable[[], Awaitable[str]]] = []
        # Told each tick's snapshot, and the seconds it covers (the history's recorder). Set once, at wiring.
        self.observers: list[Callable[[Snapshot, float], None]] = []
        self._responding: set[asyncio.Task[None]] = set()
        self.loop = Periodic("monitor", config.server.monitor_interval, self._timed_tick)
        self.reconfigure(config)

    async def close(self) -> None:
        await self.loop.close()
        for task in self._responding:
            task.cancel()
        await asyncio.gather(*self._responding, return_exceptions=True)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline
        self.snapshot = Snapshot(host=self.read(self.config.server.state_dir))  # figures for status at once
        self.loop.start()

    # -- one tick -----------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """The thresholds (at startup, and as a reload left them)."""
        self.config = config
        t = config.thresholds
        self.host_limits = {
            "memory": Limit(t.memory_warning, t.memory_critical),
            "cpu": Limit(t.cpu_warning),
            "load": Limit(t.load_warning),
            "storage": Limit(t.storage_warning),
        }

    async def _timed_tick(self) -> None:
        with MONITOR_TICK_SECONDS.time():
            await self.tick()

    async def tick(self) -> None:
        host = await asyncio.to_thread(self.read, self.config.server.state_dir)
        used, holders = await asyncio.to_thread(self._container_memory, *self._containers())
        sites = self.supervisor.sites  # read again after the thread: a reload may have removed a site meanwhile
        used = {name: n for name, n in used.items() if name in sites}
        for name, bytes_used in holders.items():  # what the budget counts for each holder
            if name in sites:
                self.supervisor.holders.measured(sites[name], bytes_used)
        readings = {"memory": host.memory, "cpu": host.cpu, "load": host.load, "storage": host.storage}
        limits = dict(self.host_limits)
        container_limit = Limit(self.config.thresholds.container_memory_warning)
        for name, bytes_used in used.items():
            metric = f"container:{name}"
            readings[metric] = 100.0 * bytes_used / sites[name].config.memory_limit
            limits[metric] = container_limit
        for crossing in self.watch.observe(readings, limits):
            await self._crossed(crossing)
        self.snapshot = Snapshot(host, used, {m: lvl.name.lower() for m, lvl in self.watch.levels.items()})
        for observe in self.observers:
            observe(self.snapshot, self.config.server.monitor_interval)

        sustained = self.config.thresholds.sustained
        if self.watch.level("memory") is Level.CRITICAL:
            await self._relieve_memory(host)
        for name in used:
            await self._near_limit(name, self.watch.sustained(f"container:{name}", sustained), readings)
        cpu_high = self.watch.sustained("cpu", sustained)
        if cpu_high != self.cpu_lowered and (cpu_high or self.watch.level("cpu") is Level.OK):
            await self._set_site_weights(lowered=cpu_high, cpu=host.cpu)
        # Congestion: CPU or load high for `sustained` ticks tightens rate limits; both back to ok (below their
        # bounds less the margin: core/thresholds.py) restores them.
        congested = self.watch.sustained("cpu", sustained) or self.watch.sustained("load", sustained)
        clear = self.watch.level("cpu") is Level.OK and self.watch.level("load") is Level.OK
        limiter = self.supervisor.limiter
        if congested != limiter.congested and (congested or clear):
            limiter.congestion(congested, f"cpu {host.cpu:.0f}%, load {host.load:.2f}")

    def _containers(self) -> tuple[dict[str, str], dict[str, str]]:
        """The ids to read, by site: its container (while it holds memory) and its holder. Taken on the event
        loop: the supervisor's state is read there only."""
        sites, holders = {}, {}
        for name, site in self.supervisor.sites.items():
            if site.container_id and site.state in (SiteState.RUNNING, SiteState.PAUSED, SiteState.DRAINING):
                sites[name] = site.container_id
            if (holder := self.supervisor.holders.current(site)) is not None:
                holders[name] = holder.id
        return sites, holders

    def _container_memory(self, sites: dict[str, str], holders: dict[str, str]) -> tuple[dict[str, int], ...]:
        """Bytes in use by each site's container, and by each site's holder (blocking: file reads)."""
        return tuple(
            {name: usage for name, cid in ids.items() if (usage := self.cgroups.usage(cid)) is not None}
            for ids in (sites, holders)
        )

    async def _crossed(self, crossing: Crossing) -> None:
        site, _, metric = crossing.metric.rpartition(":")
        text = crossing.describe()
        log.warning("threshold: %s", text) if crossing.after > crossing.before else log.info("threshold: %s", text)
        await self.supervisor.lifecycle.record(site or HOST, EventKind.THRESHOLD, metric, detail=text)
        if metric == "storage" and crossing.after >= Level.WARNING:
            await self._free_storage()

    # -- responses ----------------------------------------------------------------------------

    async def _relieve_memory(self, host: HostReading) -> None:
        """Memory critical: evict idle sites (least recently used first), as many at once as should bring
        memory below the warning level; read again, and go on until it is below or nobody is left."""
        sup, t = self.supervisor, self.config.thresholds
        reading = host
        while reading.memory >= t.memory_warning:
            order = sup.evictor.eviction_order(await sup.router.in_flight())
            if not order:
                log.warning("memory %.1f%% is critical and no idle site is left to evict", reading.memory)
                return
            excess = (reading.memory - t.memory_warning) / 100 * reading.memory_total
            victims: dict[str, int] = {}
            for resident in order:  # enough of them to free the excess, by what each uses now
                victims[resident.name] = self.snapshot.memory_used.get(resident.name) or resident.memory
                if sum(victims.values()) >= excess:
                    break
            why = f"host memory {reading.memory:.1f}% (critical {t.memory_critical:g}%)"
            stopped = await asyncio.gather(
                *(sup.evictor.evict([name], "memory critical", f"{why}; frees {used / MiB:.0f} MiB in use")
                  for name, used in victims.items())
            )  # fmt: skip
            if not any(stopped):
                return  # each got a request meanwhile: they are busy now, and the next tick looks again
            reading = await asyncio.to_thread(self.read, self.config.server.state_dir)

    async def _near_limit(self, name: str, sustained: bool, readings: dict[str, float]) -> None:
        if sustained and name not in self.near_limit:
            self.near_limit.add(name)
            percent = readings[f"container:{name}"]
            site = self.supervisor.sites.get(name)
            if site is None:
                return
            detail = f"{percent:.0f}% of its {site.config.memory_limit // MiB} MiB limit"
            log.warning("site %s: memory near its limit: %s", name, detail)
            await self.supervisor.lifecycle.record(name, EventKind.NEAR_LIMIT, "memory", detail=detail)
        elif not sustained:
            self.near_limit.discard(name)

    async def _free_storage(self) -> None:
        """Storage warning: old temp files, and images the project made that no site uses. Nothing else."""
        files, file_bytes = await asyncio.to_thread(clean_temp, self.config.server.temp_dir, time.time())
        keep = [s.config.run_image for s in self.supervisor.sites.values()]
        images, image_bytes = await self.runtime.prune_own_images(keep)
        detail = (
            f"deleted {files} temp files ({file_bytes / MiB:.1f} MiB) and {images} unused images "
            f"({image_bytes / MiB:.1f} MiB)"
        )
        log.warning("storage warning: %s", detail)
        await self.supervisor.lifecycle.record(HOST, EventKind.STORAGE_FREED, "storage", detail=detail)
        for respond in self.storage_responses:  # slower ones (the backups' prune): in the background, said after
            self._responding.add(task := asyncio.ensure_future(self._respond(respond)))
            task.add_done_callback(self._responding.discard)

    async def _respond(self, respond: Callable[[], Awaitable[str]]) -> None:
        detail = await respond()
        log.warning("storage warning: %s", detail)
        await self.supervisor.lifecycle.record(HOST, EventKind.STORAGE_FREED, "storage", detail=detail)

    async def _set_site_weights(self, *, lowered: bool, cpu: float) -> None:
        """CPU contended for a while: lower non-persistent sites' weight until it clears, then restore it."""
        self.cpu_lowered = lowered
        changed = []
        for name, site in self.supervisor.sites.items():
            if site.config.strategy is Strategy.PERSISTENT or site.container_id is None:
                continue
            shares = LOWERED_SHARES if lowered else site.config.cpu_weight
            try:
                await self.runtime.set_cpu_shares(site.container_id, shares)
            except Exception as exc:  # a container removed meanwhile: nothing to weigh
                log.warning("site %s: could not set its CPU weight: %s", name, exc)
                continue
            changed.append(name)
        kind = EventKind.CPU_WEIGHTS_LOWERED if lowered else EventKind.CPU_WEIGHTS_RESTORED
        detail = f"cpu {cpu:.0f}%; {', '.join(changed) or 'no sites'}"
        log.warning("%s: %s", kind, detail)
        await self.supervisor.lifecycle.record(HOST, kind, "cpu", detail=detail)
