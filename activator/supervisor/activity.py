"""Activity: who asked for which site, and when, from Caddy (its per-host metrics, or its access log)."""

from __future__ import annotations

from activator.core.rates import Rates
from activator.interfaces import Clock
from activator.supervisor.site import Site


class Activity:
    """Requests per site over sliding windows, and the last one, in the monotonic time every decision uses
    (Caddy stamps its log in wall time: converted on the way in). Writers: on_request (the access log, one line at
    a time) and on_requests (Caddy's metrics, a tick's count at once)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._rates = Rates()
        self._read_counts = False  # the counts come from Caddy's metrics, read each tick (on_requests)

    def on_request(self, site: str, wall_ts: float) -> None:
        """One request for the site that started at wall_ts (unix seconds)."""
        self._rates.record(site, self._clock.monotonic() - (self._clock.wall() - wall_ts))

    def on_requests(self, site: str, count: int) -> None:
        """`count` requests for the site that ended since the previous read of Caddy's counters: made about now."""
        self._read_counts = True
        self._rates.record(site, self._clock.monotonic(), count)

    def last_request(self, site: str) -> float | None:
        return self._rates.last_request(site)

    def per_minute(self, site: str, window: float = 60.0) -> float:
        """Requests per minute over the last `window` seconds (at most 5 minutes)."""
        return self._rates.per_minute(site, self._clock.monotonic(), window)

    def per_second(self, site: str, window: float) -> float:
        """Requests per second over the last `window` seconds (the time they cover: core/rates.py): what the
        scaling and the rate limits decide on."""
        return self._rates.per_second(site, self._clock.monotonic(), window, read_counts=self._read_counts)

    def last_activity(self, site: Site) -> float:
        """What idleness counts from: the last request (a replica's: its site's), or the start or wake if later."""
        requests = self._rates.last_request(site.config.replica_of or site.name)
        return max(requests or 0.0, site.up_since or 0.0)
