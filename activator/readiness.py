"""Readiness: GET a just-started app's health path until it answers, or until its container exits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from activator.config import SiteConfig
from activator.core.probe import is_ready_status, probe_delays

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2)


@dataclass(frozen=True)
class Exited:
    code: int | None


async def wait_ready(
    http: aiohttp.ClientSession, site: SiteConfig, port: int, exited: asyncio.Future[int | None]
) -> Exited | None:
    """Probe until the app answers (None), or return how its container exited once `exited` resolves.
    Probes start a few milliseconds apart and back off to 50 ms; the caller bounds the whole wait."""
    url = f"http://127.0.0.1:{port}{site.health_path}"
    headers = {"Host": site.hosts[0], "User-Agent": "dialup-probe"}
    for delay in probe_delays():
        attempt = asyncio.ensure_future(_probe_once(http, url, headers))
        racing: set[asyncio.Future[Any]] = {attempt, exited}
        done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if exited in done:
            attempt.cancel()
            return Exited(exited.result())
        if attempt.result():
            return None
        await asyncio.wait({exited}, timeout=delay)
    raise AssertionError("probe_delays() never ends")


async def _probe_once(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bool:
    try:
        async with http.get(url, headers=headers, timeout=PROBE_TIMEOUT, allow_redirects=False) as r:
            return is_ready_status(r.status)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
