"""Readiness: probe a just-started app until it answers, or until its container's run ends."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import aiohttp

from activator.config import SiteConfig
from activator.core.probe import is_ready_status, probe_delays
from activator.interfaces import Clock, Prober

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2)
T = TypeVar("T")


class HttpProber:
    """Prober over HTTP: GET the site's health_path on 127.0.0.1."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def probe(self, site: SiteConfig, port: int) -> bool:
        url = f"http://127.0.0.1:{port}{site.health_path}"
        headers = {"Host": probe_host(site), "User-Agent": "dialup-probe"}
        try:
            async with self.http.get(url, headers=headers, timeout=PROBE_TIMEOUT, allow_redirects=False) as r:
                return is_ready_status(r.status)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False


def probe_host(site: SiteConfig) -> str:
    """A Host the site answers to: its first exact name, else one that its first wildcard matches."""
    exact = [h for h in site.hosts if not h.startswith("*.")]
    return exact[0] if exact else site.hosts[0].replace("*", "dialup-probe", 1)


async def wait_ready(prober: Prober, clock: Clock, site: SiteConfig, port: int, ended: asyncio.Future[T]) -> T | None:
    """Probe until the app answers (None), or return what `ended` resolves to once it does.
    Probes start a few milliseconds apart and back off to 50 ms; the caller bounds the whole wait."""
    for delay in probe_delays():
        attempt = asyncio.ensure_future(prober.probe(site, port))
        if not await _first(attempt, ended):
            return ended.result()
        if attempt.result():
            return None
        pause = asyncio.ensure_future(clock.sleep(delay))
        if not await _first(pause, ended):
            return ended.result()
    raise AssertionError("probe_delays() never ends")


async def _first(step: asyncio.Future[Any], ended: asyncio.Future[Any]) -> bool:
    """Wait for `step` or `ended`, whichever is first: True if `step` finished, else it is cancelled."""
    racing: set[asyncio.Future[Any]] = {step, ended}
    try:
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        completed = step.done()
        if not completed:
            step.cancel()
    return completed
