"""Activity from Caddy's own metrics: per-host request counters read from its admin API (/metrics) every reaper
tick, turned into "n requests for site X in the last tick" (server.activity = "metrics"). The cost of a tick grows
with the hosts that had requests since Caddy's last reload, not with the requests."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from activator.config import Config
from activator.core.counters import CounterDeltas, Series, attribute
from activator.proxy.caddy import CaddyAdmin, CaddyError
from activator.proxy.render import SERVER, site_handlers

log = logging.getLogger(__name__)

REQUESTS = b"caddy_http_requests_total"
RELOADED = b"caddy_config_last_reload_success_timestamp_seconds"

# One sample of the counter: its labels (quoted values may hold escaped quotes or braces) and its value.
_SAMPLE = re.compile(rb"^" + REQUESTS + rb'\{((?:[^"}\n]|"(?:[^"\\\n]|\\.)*")*)\}[ \t]+(\S+)', re.M)
_LABEL = re.compile(rb'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


@dataclass
class Scrape:
    reloaded: float | None = None  # unix time of Caddy's last successful config load; None when not given
    requests: dict[Series, float] = field(default_factory=dict)  # (host, handler) -> requests, for one server
    unlabelled: bool = False  # some sample had no host label: Caddy's metrics are not per host


def _unescape(value: bytes) -> str:
    text = value.decode(errors="replace")
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text) if "\\" in text else text


def _runs(text: bytes, start: bytes) -> list[bytes]:
    """The runs of lines of `text` that begin with `start` (a family's name and "{", or " " for one without
    labels), found without reading the rest: Prometheus' client writes a family's samples together, after its
    # HELP and # TYPE lines, so a run ends at the next comment line. Hundreds of KiB of histograms are skipped."""
    found, pos, marker = [], 0, b"\n" + start
    while (begin := text.find(marker, pos)) >= 0:
        end = text.find(b"\n#", begin + 1)
        end = len(text) if end < 0 else end
        found.append(text[begin + 1 : end + 1])
        pos = end
    return found


def parse(text: bytes, server: str = SERVER) -> Scrape:
    """The request counters of `server` and the last reload's time, from Prometheus' text format (pure)."""
    text = b"\n" + text  # every line, the first too, begins after a newline
    scrape = Scrape()
    for run in _runs(text, RELOADED + b" "):
        try:
            scrape.reloaded = float(run.split(None, 2)[1])
        except (IndexError, ValueError):
            pass
    for section in _runs(text, REQUESTS + b"{"):
        for m in _SAMPLE.finditer(section):
            labels = {k.decode(): _unescape(v) for k, v in _LABEL.findall(m.group(1))}
            if labels.get("server") != server:
                continue
            try:
                value = float(m.group(2))
            except ValueError:
                continue
            if "host" not in labels:
                scrape.unlabelled = True
            key = (labels.get("host", ""), labels.get("handler", ""))
            scrape.requests[key] = scrape.requests.get(key, 0.0) + value
    return scrape


class CaddyMetrics:
    """Reads Caddy's per-host request counters and tells `record(site, n)` of the requests that ended since the
    last read (Caddy counts a request when it ends, as its access log did). Known to within one read: a request
    counts as made at the read that first sees it. The first read sets the baseline, unless Caddy's counters
    started from zero after this activator did (its config was loaded now): then they are all new."""

    def __init__(
        self,
        admin: CaddyAdmin,
        config: Config,
        site_of: Callable[[str], str | None],
        record: Callable[[str, int], None],
    ) -> None:
        self.admin, self._site_of, self._record = admin, site_of, record
        self.reconfigure(config)
        self._deltas = CounterDeltas(since=time.time())  # the config load of this start is a reload after it
        self._lock = asyncio.Lock()  # one read at a time: counters are compared in the order they were read
        self._failing = False
        self._warned_unlabelled = False
        self.reads = 0
        self.bytes = 0  # of the last read
        self.unattributed = 0  # requests of sites' routes that no site could be found for, in all
        if config.caddy.automatic_https:
            log.warning(
                "activity = metrics with automatic HTTPS: Caddy keeps a series for every Host header sent over"
                " HTTPS, which anyone can make grow; activity = log (the default with automatic HTTPS) does not"
            )

    def reconfigure(self, config: Config) -> None:
        """Which routes and hosts count for which site (at startup, and after a reload)."""
        self._handlers = site_handlers(config)
        self._catchall = [
            s.name for s in config.container_sites if not s.replica_of and any(h.startswith("*.") for h in s.hosts)
        ]

    async def poll(self) -> bool:
        """One read. False when Caddy's metrics could not be read (so that nothing is decided on stale figures).
        Called by the reaper every tick, and by the router before each change to Caddy's config."""
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> bool:
        try:
            body = await self.admin.read("/metrics")
        except (aiohttp.ClientError, CaddyError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("cannot read Caddy's metrics (%s): activity is not known until it answers", exc)
            self._failing = True
            return False
        if self._failing:
            log.info("Caddy's metrics answer again")
        self._failing = False
        self.reads += 1
        self.bytes = len(body)
        scrape = parse(body)
        if scrape.unlabelled and not self._warned_unlabelled:
            self._warned_unlabelled = True
            log.warning("Caddy counts requests without a host label: set apps.http.metrics.per_host = true")
        deltas = self._deltas.update(scrape.reloaded, scrape.requests)
        counted = attribute(deltas, self._site_of, self._handlers, self._catchall)
        if counted.unattributed:
            self.unattributed += counted.unattributed
            log.debug("%d requests for a Host Caddy's metrics do not name", counted.unattributed)
        for site, n in counted.per_site.items():
            self._record(site, n)
        return True
