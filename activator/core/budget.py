"""Memory admission and eviction plans, pure: may a site start, and whom to stop to make room for it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Resident:
    """A site whose container holds memory: running, paused, starting or draining."""

    name: str
    memory: int  # its memory limit
    paused: bool
    last_activity: float
    in_flight: int
    persistent: bool
    busy: bool = False  # starting, waking, draining, or requests are held for it: not to be evicted

    @property
    def evictable(self) -> bool:
        return not (self.persistent or self.busy or self.in_flight > 0)


@dataclass(frozen=True)
class Plan:
    evict: tuple[str, ...]  # in this order
    used_after: int  # the sum of limits once they are gone and the site has started


def eviction_order(residents: Iterable[Resident]) -> list[Resident]:
    """Who goes first: paused before running, then least recently used."""
    return sorted((r for r in residents if r.evictable), key=lambda r: (not r.paused, r.last_activity))


def admit(need: int, budget: int, residents: Iterable[Resident]) -> Plan | None:
    """The evictions that let `need` more bytes fit in `budget`, or None if nothing could make it fit."""
    residents = list(residents)
    used = sum(r.memory for r in residents)
    evict: list[str] = []
    for victim in eviction_order(residents):
        if used + need <= budget:
            break
        evict.append(victim.name)
        used -= victim.memory
    if used + need > budget:
        return None  # even evicting everyone evictable is not enough: evict nobody
    return Plan(evict=tuple(evict), used_after=used + need)
