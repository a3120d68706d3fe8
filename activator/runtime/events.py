"""The engine's event stream: followed in a thread, parsed, reconnected when it breaks, delivered on the loop.

When Docker's event stream breaks, the stream reconnects with `since` set to the last event's whole second (the API's
`since` has no finer grain that every engine takes), so the events of that second come again; Replays says which of
them were delivered before. Replays is pure: the events' own times, no clock."""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import docker

from activator.metrics import DOCKER_CALLS
from activator.model import ContainerEvent
from activator.runtime.labels import LABEL_ROLE, LABEL_SITE

log = logging.getLogger("activator.runtime.docker")  # the engine adapter's logger, as before the stream moved here

NS = 1_000_000_000
RECONNECT_PAUSE = 1.0  # seconds between a broken event stream and the next try

Key = tuple[str, str, int]  # container id, action, timeNano


class Replays:
    """The keys of the events delivered in the last moments, by the events' own times.

    A reconnect asks from the newest event's whole second, so only events from that second on can be replayed;
    keys older than `window` seconds before that second are forgotten (the window is slack for an engine whose
    events come slightly out of order), which keeps memory to a few seconds of events."""

    def __init__(self, window: float = 1.0) -> None:
        self.window_ns = int(window * NS)
        self._seen: set[Key] = set()
        self._by_time: list[tuple[int, Key]] = []  # a heap: the oldest key first
        self._newest = 0

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, event: ContainerEvent) -> bool:
        """True if the event was delivered already (a replay); else remember it and say False."""
        if event.time_ns <= 0:
            return False  # no timeNano (a very old engine): deliver everything, a repeat is better than a loss
        key = (event.container_id, event.action, event.time_ns)
        if key in self._seen:
            return True
        self._seen.add(key)
        heapq.heappush(self._by_time, (event.time_ns, key))
        self._newest = max(self._newest, event.time_ns)
        horizon = self._newest // NS * NS - self.window_ns
        while self._by_time and self._by_time[0][0] < horizon:
            self._seen.discard(heapq.heappop(self._by_time)[1])
        return False


class EventStream:
    """Follows the engine's container events that carry `label` ("key=value") in a thread from the moment it is
    made, and calls on_event on the running event loop for each; reconnects (losing none, repeating none) if the
    stream breaks, until closed."""

    def __init__(self, client: docker.DockerClient, label: str, on_event: Callable[[ContainerEvent], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = client
        self._filters = {"type": "container", "label": label}
        self._on_event = on_event
        self._events: Any = None  # the open stream, closed to end the thread
        self._closed = False
        self._thread = threading.Thread(target=self._pump, name="docker-events", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        self._closed = True
        if self._events is not None:
            self._events.close()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5)

    def _pump(self) -> None:
        since: int | None = None  # whole seconds: a reconnect repeats that second's events, never skips one
        replays = Replays()  # ... and the repeats are dropped here
        while not self._closed:
            try:
                DOCKER_CALLS.labels("events").inc()
                self._events = self._client.api.events(decode=True, filters=self._filters, since=since)
                for raw in self._events:
                    since = int(raw.get("time") or 0) or since
                    event = _event(raw)
                    if not replays.seen(event):
                        self._loop.call_soon_threadsafe(self._on_event, event)
            except Exception as exc:  # closing the stream ends it with an error too
                if self._closed:
                    return
                log.error("docker event stream broke (%s); reconnecting", exc)
                time.sleep(RECONNECT_PAUSE)


def _event(raw: dict[str, Any]) -> ContainerEvent:
    actor = raw.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    code = attrs.get("exitCode")
    return ContainerEvent(
        container_id=actor.get("ID", ""),
        site=attrs.get(LABEL_SITE, ""),
        action=str(raw.get("Action") or raw.get("status") or ""),
        exit_code=int(code) if code is not None and str(code).isdigit() else None,
        role=attrs.get(LABEL_ROLE, "site"),
        time_ns=int(raw.get("timeNano") or 0),
    )
