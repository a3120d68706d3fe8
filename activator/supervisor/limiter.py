"""The RateLimiter: per-site rate limits without a Caddy plugin. A site under its limit is served by Caddy
directly, as any site; over it, its route moves to the activator, whose token bucket answers the excess with
429 and Retry-After and lets the rest through; back under it, the route returns to the container."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from activator.core.ratelimit import (
    ENGAGE_WINDOW,
    RELEASE_WINDOW,
    Bucket,
    RateLimit,
    congestion_limit,
    detour,
)
from activator.errors import RateLimited
from activator.interfaces import Clock
from activator.metrics import RATE_LIMITED
from activator.model import EventKind, Strategy
from activator.supervisor.activity import Activity
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.routes import Routes
from activator.supervisor.site import Site

log = logging.getLogger("activator.supervisor")


def shown(limit: RateLimit) -> str:
    return f"{limit.rate:g}/s (burst {limit.burst})"


class RateLimiter:
    """Writer of: each site's bucket, the requests it refused, whether the host is congested (limits tightened),
    and whether a site is held on the activator (through Routes.hold, which nothing else calls). `admit` is the
    edge's one question; `tick` runs every reaper tick; the monitor says when congestion starts and ends."""

    def __init__(
        self, sites: Mapping[str, Site], activity: Activity, routes: Routes, lifecycle: Lifecycle, clock: Clock
    ) -> None:
        self._sites, self._activity, self._routes = sites, activity, routes
        self._lifecycle, self._clock = lifecycle, clock
        self._buckets: dict[str, Bucket] = {}
        self._held_since: dict[str, float] = {}
        self.refused: dict[str, int] = {}
        self.congested = False

    def limit(self, site: Site) -> RateLimit | None:
        """The site's limit now: its own, or, while the host is congested and the site is not persistent, a
        tighter one (core/ratelimit.py: CONGESTION_FACTOR of it). A site without a limit has none, congested or not."""
        cfg = site.config
        if cfg.rate_limit is None or cfg.replica_of or not self.congested or cfg.strategy is Strategy.PERSISTENT:
            return cfg.rate_limit
        return congestion_limit(cfg.rate_limit)

    def admit(self, site: Site) -> None:
        """Let a request for the site through, or raise RateLimited with the seconds until one would be."""
        limit = self.limit(site)
        if limit is None:
            return
        bucket = self._buckets.get(site.name)
        if bucket is None or bucket.limit != limit:
            bucket = self._buckets[site.name] = Bucket(limit)
        wait = bucket.take(self._clock.monotonic())
        if wait > 0:
            self.refused[site.name] = self.refused.get(site.name, 0) + 1
            RATE_LIMITED.labels(site.name).inc()
            raise RateLimited(site.name, shown(limit), wait)

    def tick(self) -> None:
        """Move each limited site's route to the activator or back, by its rate (refused requests included)."""
        now = self._clock.monotonic()
        for site in list(self._sites.values()):
            limit = self.limit(site)
            held = self._routes.held(site.name)
            if limit is None:
                if held:
                    self._hold(site, False, "no limit now")
                continue
            recent = self._activity.per_second(site.name, ENGAGE_WINDOW)
            settled = self._activity.per_second(site.name, RELEASE_WINDOW)
            since = self._held_since.get(site.name, now)
            wanted = detour(now - since if held else None, recent, settled, limit)
            if wanted != held:
                rate = recent if wanted else settled
                self._hold(site, wanted, f"{rate:.1f} requests/s against a limit of {shown(limit)}")

    def _hold(self, site: Site, held: bool, detail: str) -> None:
        self._routes.hold(site.name, held)
        if held:
            self._held_since[site.name] = self._clock.monotonic()
        else:
            self._held_since.pop(site.name, None)
        kind = EventKind.RATE_LIMITED if held else EventKind.RATE_LIMIT_LIFTED
        log.info("site %s: %s: %s", site.name, kind, detail)
        self._lifecycle.record(site, kind, "rate", detail=detail)

    def congestion(self, congested: bool, why: str) -> list[str]:
        """The host is congested (CPU or load high for `sustained` ticks), or clear again: returns the sites
        whose limits change."""
        before = {name: self.limit(site) for name, site in self._sites.items()}
        self.congested = congested
        changed = [name for name, site in self._sites.items() if self.limit(site) != before[name]]
        kind = EventKind.LIMITS_TIGHTENED if congested else EventKind.LIMITS_RESTORED
        detail = f"{why}; {', '.join(changed) or 'no sites'}"
        log.warning("%s: %s", kind, detail)
        self._lifecycle.record("(host)", kind, "congestion", detail=detail)
        return changed

    def forget(self, site: str) -> None:
        self._buckets.pop(site, None)
        self.refused.pop(site, None)
        self._held_since.pop(site, None)

    def release_all(self) -> None:
        """At shutdown: every site back on its container, so that Caddy serves them while the activator is gone
        (a site left on the activator would get 502s after Caddy's retries)."""
        for name in list(self._held_since):
            self._routes.hold(name, False)
        self._held_since.clear()
