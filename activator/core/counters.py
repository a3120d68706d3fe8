"""Requests per site from Caddy's cumulative request counters, read once a tick (pure: every figure is an argument).

Caddy 2.11 counts a request when it ends, per (host, handler) series: `host` is the request's Host, lowercased, port
and all, for names that appear in a host matcher of its config; every other Host (a wildcard site's names over plain
HTTP, a port the config does not list) is counted as "_other". `handler` is the first handler of the route the
request matched, so the 404 route for unknown hosts can be told from the sites' routes.

The counters start again from zero whenever Caddy loads a config (every route switch is a reload) and when Caddy
restarts. The same scrape gives the time of the last successful reload: when it changed, every counter counts from
that reload, so its whole value is new. A counter that went down without it is taken as restarted too."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

OTHER = "_other"  # Caddy's host label for a Host that is not named in its config

Series = tuple[str, str]  # (host, handler)


class CounterDeltas:
    """What each counter rose by since the previous scrape. The first scrape sets the baseline: what the counters
    held then happened at an unknown time (before the activator started, say) and is not counted, unless they
    started from zero at a reload that came after `since` (the wall time counting began: the activator's start,
    whose own config load is such a reload), in which case all of it is new."""

    def __init__(self, since: float | None = None) -> None:
        self._since = since
        self._first = True
        self._epoch: float | None = None
        self._last: dict[Series, float] = {}

    def update(self, epoch: float | None, totals: Mapping[Series, float]) -> dict[Series, int]:
        """`epoch`: Caddy's last reload time (None if it does not say); `totals`: every counter's value now."""
        if self._first:
            fresh = epoch is not None and self._since is not None and epoch >= self._since
            deltas = _rises(totals, {}) if fresh else {}
        else:
            deltas = _rises(totals, self._last if epoch == self._epoch else {})  # a new epoch counts from zero
        self._first, self._epoch, self._last = False, epoch, dict(totals)
        return deltas


def _rises(totals: Mapping[Series, float], before: Mapping[Series, float]) -> dict[Series, int]:
    deltas: dict[Series, int] = {}
    for series, value in totals.items():
        rise = value - before.get(series, 0.0)  # a series not seen before counts from zero
        if rise < 0:  # went back: counting again from zero since a reload or restart not otherwise seen
            rise = value
        if rise >= 1:
            deltas[series] = round(rise)
    return deltas


@dataclass
class Attributed:
    per_site: dict[str, int] = field(default_factory=dict)
    unattributed: int = 0  # requests of the sites' routes whose site cannot be told (see attribute)


def attribute(
    deltas: Mapping[Series, int],
    site_of: Callable[[str], str | None],
    site_handlers: Collection[str],
    catchall_sites: Collection[str],
) -> Attributed:
    """Requests per site. A named host goes to its site as the supervisor's host lookup finds it (any case, with
    or without a port, `*.` wildcards); a host no site has (an unknown host's 404, over HTTPS where Caddy names
    every host) to none. Requests counted as "_other" by a route whose first handler is one of `site_handlers`
    (not the 404 route) went to some site that Caddy did not name: they are given to each of `catchall_sites`
    (the sites with wildcard hosts, whose names Caddy cannot know in advance), all of them when there are
    several, which over-counts them rather than let a busy one look idle; with none, they are unattributed."""
    out = Attributed()
    for (host, handler), n in deltas.items():
        if host == OTHER:
            if handler not in site_handlers:
                continue
            if not catchall_sites:
                out.unattributed += n
            for site in catchall_sites:
                out.per_site[site] = out.per_site.get(site, 0) + n
            continue
        found = site_of(host)
        if found is not None:
            out.per_site[found] = out.per_site.get(found, 0) + n
    return out
