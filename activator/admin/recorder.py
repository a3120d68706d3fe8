"""The history recorder (issue 16, groundwork): observations folded into minutes as they come (a dict update, on
the event loop, never awaiting), and every FLUSH_EVERY seconds the minutes that ended written in one batch, off the
request path; the history compacted once an hour. Writer of the Minutes and (through History) of the table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from activator.admin.history import History
from activator.core.history import HOUR, Minutes, Point
from activator.interfaces import EventLog
from activator.model import EventKind
from activator.periodic import Periodic

log = logging.getLogger(__name__)

FLUSH_EVERY = 10.0  # seconds


class Recorder:
    def __init__(self, history: History, wall: Callable[[], float], flush_every: float = FLUSH_EVERY) -> None:
        self._history, self._wall = history, wall
        self._minutes = Minutes()
        self._compacted_hour: int | None = None
        self.loop = Periodic("history", flush_every, self.flush)

    # -- what is observed (each a dict update: called on the event loop, from the request path too) ---------

    def request(self, site: str, ts: float, status: int, seconds: float) -> None:
        """One request that started at ts (unix seconds), answered `status` after `seconds` (Caddy's log)."""
        self._minutes.request(site, ts, status, seconds * 1000)

    def counted(self, site: str, count: int) -> None:
        """Requests read from Caddy's per-host metrics (activity = "metrics"): counted, without status or time."""
        self._minutes.requests(site, self._wall(), count)

    def memory(self, used: Mapping[str, int], limits: Mapping[str, int], seconds: float = 0.0) -> None:
        """One monitor tick's readings: bytes in use by each site's container, against its limit, standing for
        the tick's `seconds`."""
        now = self._wall()
        for site, n in used.items():
            self._minutes.memory(site, now, n, limits.get(site, 0), seconds)

    def cpu(self, site: str, seconds: float) -> None:
        self._minutes.cpu(site, self._wall(), seconds)

    def state(self, site: str, seconds: float, *, failing: bool) -> None:
        self._minutes.state(site, self._wall(), seconds, failing=failing)

    def cold_start(self, site: str, ms: float) -> None:
        self._minutes.cold_start(site, self._wall(), ms)

    def observe(
        self, used: Mapping[str, int], limits: Mapping[str, int], states: Mapping[str, bool], seconds: float
    ) -> None:
        """One monitor tick: memory in use against limits, and each site's state over the tick (True: failing)."""
        self.memory(used, limits, seconds)
        for site, failing in states.items():
            self.state(site, seconds, failing=failing)

    def pending(self) -> list[Point]:
        """The minutes not written yet: the panel adds them to the history's."""
        return self._minutes.peek()

    # -- written -------------------------------------------------------------------------------------------

    async def flush(self) -> None:
        now = self._wall()
        await self._history.write(self._minutes.take(now))
        hour = int(now) // HOUR
        if hour != self._compacted_hour:
            self._compacted_hour = hour
            await self._history.compact(now)

    async def close(self) -> None:
        """Stop the loop; what is left of the minute under way is written (a restart adds to it)."""
        await self.loop.close()
        try:
            await self._history.write(self._minutes.take(float("inf")))
        except Exception as exc:
            log.warning("history: the last minutes could not be written: %r", exc)


class RecordingEvents:
    """The supervisor's event log, which also tells the recorder of each start and how long it took."""

    def __init__(self, events: EventLog, recorder: Recorder) -> None:
        self._events, self._recorder = events, recorder

    async def record(
        self, site: str, kind: EventKind, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None:
        if kind is EventKind.START and duration_ms is not None:
            self._recorder.cold_start(site, duration_ms)
        await self._events.record(site, kind, cause, duration_ms, detail)
