"""Ingest Caddy's access log, streamed as JSON lines over TCP: who asked for which host, and when."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import orjson

from activator.config import HostPort

log = logging.getLogger(__name__)

ACCESS_LOGGER = "dialup"  # Caddy names the server's access logger http.log.access.dialup
MAX_LINE = 1 << 20


@dataclass(frozen=True)
class Entry:
    host: str
    ts: float  # when the request started (unix seconds)
    duration: float  # seconds
    status: int  # 0 when Caddy logged none


def parse_line(line: bytes) -> Entry | None:
    """One access log entry, or None for anything else."""
    try:
        entry = orjson.loads(line)
        request = entry["request"]
        duration = float(entry.get("duration") or 0.0)
        # Caddy stamps an entry when the request ends; its start is what "last request" means for idleness.
        return Entry(str(request["host"]), float(entry["ts"]) - duration, duration, int(entry.get("status") or 0))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class AccessLogListener:
    """A TCP listener Caddy's `net` log writer connects to; calls on_request(host, ts) per entry, and each of
    `also` with the whole entry (the history's recorder)."""

    def __init__(
        self, listen: HostPort, on_request: Callable[[str, float], None], also: tuple[Callable[[Entry], None], ...] = ()
    ) -> None:
        self.listen = listen
        self.on_request = on_request
        self.also = also
        self.lines = 0
        self._server: asyncio.Server | None = None
        self._readers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._reader, self.listen.host, self.listen.port, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _reader(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._readers.add(task)
        log.info("Caddy's access log connected")
        try:
            while line := await reader.readline():
                parsed = parse_line(line)
                if parsed is not None:
                    self.lines += 1
                    self.on_request(parsed.host, parsed.ts)
                    for observe in self.also:
                        observe(parsed)
        except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
            log.warning("access log stream: %s", exc)
        except asyncio.CancelledError:
            # close() cancels readers; ending quietly spares asyncio's server callback a noisy traceback.
            pass
        finally:
            self._readers.discard(task)
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
