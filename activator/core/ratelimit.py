"""Per-site rate limits: a token bucket, as nginx's limit_req with a burst, and when a site's requests should go
through it. Pure: time is an argument. The activator answers what is over the limit with 429 and Retry-After;
while a site is under its limit Caddy serves it directly, and the activator never sees its requests."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from activator.core.thresholds import CLEAR_MARGIN

ENGAGE_WINDOW = 2.0  # seconds: a rate above the limit over this long moves the site's route to the activator
RELEASE_WINDOW = 10.0  # seconds: ... and one below the limit, less its margin, over this long moves it back
# Host congestion: the limits of non-persistent sites are this share of their own. A site with no limit gets none:
# the plan's zones (10/s static, 50/s apps) given to every lazy site would answer 429 to a cold start's burst of
# requests that the operator never limited, and to a site that scales up for its load (measured).
CONGESTION_FACTOR = 0.5

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m)\s*$")


@dataclass(frozen=True)
class RateLimit:
    rate: float  # requests per second, on average
    burst: int  # requests at once, above the rate, before any is refused

    @staticmethod
    def parse(value: object) -> RateLimit:
        """`"10/s"`, `"600/m"`, or `{ rate = "10/s", burst = 20 }` (the burst defaults to one second's rate)."""
        if isinstance(value, dict):
            unknown = set(value) - {"rate", "burst"}
            if unknown or "rate" not in value:
                raise ValueError('expected { rate = "10/s", burst = 20 }')
            rate = RateLimit.parse(value["rate"]).rate
            burst = value.get("burst", max(1, math.ceil(rate)))
            if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
                raise ValueError("burst: expected a whole number of requests, 1 or more")
            return RateLimit(rate, burst)
        m = _RATE.match(str(value)) if isinstance(value, str) else None
        if m is None or float(m.group(1)) <= 0:
            raise ValueError("expected a rate like '10/s' or '600/m'")
        rate = float(m.group(1)) / (1.0 if m.group(2) == "s" else 60.0)
        return RateLimit(rate, max(1, math.ceil(rate)))

    def scaled(self, factor: float) -> RateLimit:
        """Tightened (factor < 1): the congestion response."""
        return RateLimit(self.rate * factor, max(1, math.floor(self.burst * factor)))


@dataclass
class Bucket:
    """Writer: the one request path that asks it (take). Holds up to `burst` tokens, refilled at `rate`."""

    limit: RateLimit
    tokens: float = -1.0  # -1: full, at the first request
    at: float = 0.0

    def take(self, now: float) -> float:
        """0 if the request may go now (a token is used); else the seconds until one would be there."""
        if self.tokens < 0:
            self.tokens, self.at = float(self.limit.burst), now
        self.tokens = min(float(self.limit.burst), self.tokens + (now - self.at) * self.limit.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.limit.rate


def detour(held: float | None, recent: float, settled: float, limit: RateLimit) -> bool:
    """Whether a site's requests should go through the activator's bucket, from its requests per second over the
    last ENGAGE_WINDOW (`recent`) and RELEASE_WINDOW (`settled`) seconds, refused ones included, and how long
    they have gone through it (`held`, None: they do not). On above the limit; off only once the release window
    has passed since (it still held the quiet seconds before a flood) and the rate there is below the limit less
    CLEAR_MARGIN (hysteresis: a rate that wavers at the limit does not switch the route with each wave)."""
    if held is None:
        return recent > limit.rate
    return held < RELEASE_WINDOW or settled > limit.rate * (1 - CLEAR_MARGIN)


def congestion_limit(limit: RateLimit) -> RateLimit:
    """A non-persistent site's limit while the host is congested."""
    return limit.scaled(CONGESTION_FACTOR)
