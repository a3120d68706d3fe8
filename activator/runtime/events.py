"""Engine events already delivered. When Docker's event stream breaks, the watcher reconnects with `since` set to
the last event's whole second (the API's `since` has no finer grain that every engine takes), so the events of that
second come again; this says which of them were delivered before. Pure: the events' own times, no clock."""

from __future__ import annotations

import heapq

from activator.model import ContainerEvent

NS = 1_000_000_000

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
