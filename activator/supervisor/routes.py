"""Routes: where Caddy should send each site, what it really does, and a task that makes the two match."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from activator.interfaces import Clock, Router
from activator.metrics import ROUTE_CHANGES, ROUTE_FAILURES

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between tries of a route change that failed, doubling
VERIFY_EVERY = 10.0  # seconds between comparisons with what Caddy really has, while nothing changes


class Unknown:
    def __repr__(self) -> str:
        return "unknown"


UNKNOWN = Unknown()  # what Caddy has after a change that failed, until it is read back
Route = int | None | Unknown  # a container's host port, None for the activator, or UNKNOWN


class Routes:
    """The desired route of every site (its container's port, or None: the activator) and the route Caddy
    has. One writer of both: Lifecycle says what it wants (`want`); this object's task applies it, retries a
    failed change with backoff until Caddy has it, and reads back what Caddy really has every VERIFY_EVERY
    seconds (a Caddy that lost its config, restarted say, gets the whole of it again).

    Two things bend a wish. A site held on the activator (`hold`: over its rate limit) is routed there whatever
    its record says. A scalable site's second instance (a replica) is the second upstream of the site's route: its
    own port while both it and the site run, else whatever the site's route is (so no request reaches a replica
    that is not serving, and draining it is moving that upstream onto the site's container); and while only the
    replica serves (the site's first container crashed), the site's route is the replica's port."""

    def __init__(self, router: Router, clock: Clock, sites: Iterable[str], primaries: Mapping[str, str]) -> None:
        """`primaries`: each replica's site."""
        self._router, self._clock = router, clock
        self._wanted: dict[str, int | None] = dict.fromkeys(sites)
        self._primary: dict[str, str] = dict(primaries)
        self._held: set[str] = set()  # sites routed to the activator whatever their record says
        self._applied: dict[str, Route] = dict.fromkeys(self._wanted, UNKNOWN)
        self._changed = asyncio.Event()
        self._tick = asyncio.Event()  # set (and replaced) whenever a wish or Caddy's state changes
        self._lock = asyncio.Lock()  # one conversation with Caddy at a time
        self._task: asyncio.Task[None] | None = None

    # -- what is wanted, and what is -----------------------------------------------------------

    def want(self, site: str, host_port: int | None) -> None:
        if site not in self._wanted:
            return  # removed from the config (a reload): a late change of its record routes nothing
        self._wanted[site] = host_port
        self._changed.set()
        self._bump()

    def hold(self, site: str, held: bool) -> None:
        """Route the site (and its replica) to the activator whatever runs (held), or as its record says again.
        Written by the RateLimiter only."""
        if held == (site in self._held) or site not in self._wanted:
            return
        (self._held.add if held else self._held.discard)(site)
        self._changed.set()
        self._bump()

    def held(self, site: str) -> bool:
        return site in self._held

    def add(self, site: str, primary: str | None = None) -> None:
        """A site the config gained (a reload): on the activator until it runs. `primary`: a replica's site."""
        self._wanted[site], self._applied[site] = None, UNKNOWN
        if primary is not None:
            self._primary[site] = primary
        self._changed.set()

    def forget(self, site: str) -> None:
        """A site the config lost (a reload), once it is stopped and its containers are gone."""
        self._wanted.pop(site, None)
        self._applied.pop(site, None)
        self._primary.pop(site, None)
        self._held.discard(site)

    def wanted(self, site: str) -> int | None:
        """Where Caddy should send what this route gets (see the class): a port, or None for the activator."""
        primary = self._primary.get(site)
        if primary is None or primary not in self._wanted:
            if site in self._held:
                return None
            own = self._wanted[site]
            if own is None:  # its first instance is down: its second one, if that serves, takes every request
                return next((self._wanted[r] for r in self._replicas(site) if self._wanted[r] is not None), None)
            return own
        shared = self.wanted(primary)
        own = self._wanted[site]
        return shared if own is None or shared is None else own

    def actual(self, site: str) -> Route:
        """What Caddy has for the site, as of the last change made or read back."""
        return self._applied.get(site, UNKNOWN)

    def routed(self, site: str) -> bool:
        """Caddy sends the site's traffic to its container."""
        want = self.wanted(site)
        return want is not None and self._applied.get(site) == want

    def settled(self, site: str) -> bool:
        """Caddy has the site's wanted route, and its second instance's (which may send requests its way)."""
        return all(self._applied.get(name) == self.wanted(name) for name in (site, *self._replicas(site)))

    def _replicas(self, site: str) -> list[str]:
        return [replica for replica, primary in self._primary.items() if primary == site]

    def _all_wanted(self) -> dict[str, int | None]:
        return {site: self.wanted(site) for site in self._wanted}

    async def settle(self, site: str, limit: float) -> bool:
        """Wait (at most `limit` seconds) until Caddy has the site's wanted route."""
        return await self._wait(lambda: self.settled(site), limit)

    async def _wait(self, done: Callable[[], bool], limit: float) -> bool:
        try:
            async with self._clock.timeout(limit):
                while not done():
                    await self._tick.wait()
        except TimeoutError:
            pass
        return done()

    def _bump(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    # -- talking to Caddy ----------------------------------------------------------------------

    async def load(self) -> None:
        """Give Caddy the whole config, with every site's wanted route (at startup, or after Caddy lost it)."""
        async with self._lock:
            wanted = self._all_wanted()
            await self._router.load(wanted)
            self._applied.update(wanted)
            self._bump()

    async def verify(self) -> None:
        """Read back what Caddy routes each site to; a difference from the wish is applied again."""
        async with self._lock:
            actual = await self._router.routes()
            if any(site not in actual for site in self._wanted):
                log.warning("Caddy lacks routes of ours (restarted, or given another config): loading them again")
                wanted = self._all_wanted()
                await self._router.load(wanted)
                actual = wanted
            for site in self._wanted:
                if self._applied.get(site) != actual[site] and self._applied.get(site) is not UNKNOWN:
                    was, now = _shown(self._applied[site]), _shown(actual[site])
                    log.warning("route %s: Caddy has %s, not %s", site, now, was)
                self._applied[site] = actual[site]
            self._bump()
        if any(not self.settled(site) for site in self._wanted):
            self._changed.set()

    async def apply(self) -> bool:
        """One pass: change every route that Caddy does not have as wanted. False if any change failed."""
        ok = True
        async with self._lock:
            for site, want in self._all_wanted().items():
                if self._applied.get(site) == want:
                    continue
                # Unknown while the change is under way: a drain must not take the old route for the new one.
                self._applied[site] = UNKNOWN
                try:
                    await self._router.route(site, want)
                except Exception as exc:
                    ROUTE_FAILURES.labels(site).inc()
                    log.warning("route %s -> %s failed (%s); trying again", site, _shown(want), exc)
                    self._applied[site], ok = UNKNOWN, False
                    continue
                self._applied[site] = want
                ROUTE_CHANGES.labels(site, "activator" if want is None else "container").inc()
                log.info("route %s -> %s", site, _shown(want))
                self._bump()
        return ok

    # -- the task ------------------------------------------------------------------------------

    def start(self) -> None:
        """Once Caddy has the whole config (load): from now on, keep it to what is wanted."""
        self._task = asyncio.ensure_future(self._run())

    @property
    def live(self) -> bool:
        return self._task is not None

    async def close(self, limit: float = 2.0) -> None:
        """Stop the task, then make one last pass (at most `limit` seconds): a site kept running by a drain
        cancelled at shutdown must not be left routed to an activator that is going away."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            try:
                async with self._clock.timeout(limit):
                    await self.apply()
            except Exception as exc:
                log.warning("could not bring Caddy's routes up to date before shutting down: %r", exc)

    async def _run(self) -> None:
        delay = RETRY_FIRST
        verify_at = self._clock.monotonic() + VERIFY_EVERY
        while True:
            try:
                async with self._clock.timeout(max(0.0, verify_at - self._clock.monotonic())):
                    await self._changed.wait()
            except TimeoutError:
                await self._verify_quietly()
                verify_at = self._clock.monotonic() + VERIFY_EVERY
                continue
            self._changed.clear()
            if await self.apply():
                delay = RETRY_FIRST
                continue
            await self._clock.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            await self._verify_quietly()  # a Caddy that lost our config refuses every change: reload it
            self._changed.set()

    async def _verify_quietly(self) -> None:
        try:
            await self.verify()
        except Exception as exc:  # Caddy down: the next pass tries again
            log.warning("could not read Caddy's routes back: %s", exc)


def _shown(route: Route) -> str:
    return "activator" if route is None else str(route) if isinstance(route, Unknown) else f"127.0.0.1:{route}"
