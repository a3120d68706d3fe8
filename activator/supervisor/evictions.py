"""Evictions and admission: make room within the memory budget by draining idle sites, or refuse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence

from activator.config import Config
from activator.core.budget import Resident, admit, eviction_order
from activator.core.policy import Action
from activator.errors import BudgetFull
from activator.interfaces import Router
from activator.model import EventKind, SiteState
from activator.supervisor.drains import Drainer
from activator.supervisor.holders import Holders
from activator.supervisor.lifecycle import Lifecycle
from activator.supervisor.site import Site
from activator.supervisor.work import Work

PLANS = 3  # a victim that got a request while draining is kept: plan again, this many times at most


class Evictor:
    """The one way to free memory: drain idle sites and stop them (paused ones first, then the least
    recently used), whether for a start that needs room (admission) or for the host (the monitor). The
    drains run to their end whoever stops waiting for them: a start that times out cancels none."""

    def __init__(
        self,
        config: Config,
        sites: Mapping[str, Site],
        router: Router,
        holders: Holders,
        drainer: Drainer,
        lifecycle: Lifecycle,
        work: Work,
        last_activity: Callable[[Site], float],
    ) -> None:
        self._config, self._sites, self._router = config, sites, router
        self._holders, self._drainer, self._lifecycle, self._work = holders, drainer, lifecycle, work
        self._last_activity = last_activity
        self._reserved: dict[str, int] = {}  # a swap's second container, by site, until it is over

    def reconfigure(self, config: Config) -> None:
        """The budget as a reload left it."""
        self._config = config

    def resident(self, site: Site, in_flight: Mapping[str, int]) -> Resident:
        return Resident(
            name=site.name,
            memory=site.config.memory_limit,
            paused=site.state is SiteState.PAUSED,
            last_activity=self._last_activity(site),
            in_flight=site.open_requests(in_flight),
            persistent=site.config.strategy.kept_up,
            busy=self._work.busy(site) or site.state not in (SiteState.RUNNING, SiteState.PAUSED),
        )

    def residents(self, in_flight: Mapping[str, int], but: Site | None = None) -> list[Resident]:
        """Every site that holds memory (but one)."""
        return [self.resident(s, in_flight) for s in self._sites.values() if s.holds_memory and s is not but]

    async def evict(self, victims: Iterable[str], cause: str, detail: str) -> int:
        """Drain and stop these sites at once; returns how many were stopped (a site that got a request
        meanwhile is kept)."""
        drains = [d for name in victims if (d := self._drainer.begin(self._sites[name], Action.STOP, cause, detail))]
        done = await asyncio.gather(*(asyncio.shield(d) for d in drains), return_exceptions=True)
        return sum(1 for stopped in done if stopped is True)

    def used(self, but: Site | None = None) -> int:
        """The memory limits of the sites that hold memory (but one), plus what the holders use, plus what
        swaps under way have reserved."""
        limits = sum(s.config.memory_limit for s in self._sites.values() if s.holds_memory and s is not but)
        return limits + self._holders.memory() + sum(self._reserved.values())

    def reserve(self, site: Site, size: int) -> None:
        """Count `size` more for the site until release(): its second container, while a swap runs."""
        self._reserved[site.name] = size

    def release(self, site: Site) -> None:
        self._reserved.pop(site.name, None)

    async def make_room(self, site: Site, extra: int = 0) -> None:
        """Before a start: the limits of everything that holds memory, plus this site's, must fit the budget.
        Evict idle sites to make it fit, or raise BudgetFull (evicting nobody) when even that cannot.
        `extra`: a second container of the site, beside its running one (a deploy's swap)."""
        budget, need = self._config.budget.memory, site.config.memory_limit + extra
        for _ in range(PLANS):
            used = self.used(but=site)
            if used + need <= budget:
                if extra:
                    self.reserve(site, extra)  # at once: no other start is admitted on the same room
                return
            # Holders always run: what they use comes off the top.
            holders = self._holders.memory()
            plan = admit(need, budget - holders, self.residents(await self._router.in_flight(), but=site))
            if plan is None:
                await self._lifecycle.record(site, EventKind.REFUSED, "budget", detail=f"{used} of {budget} bytes")
                raise BudgetFull(site.name, need, used, budget)
            await self.evict(plan.evict, "budget", f"made room for {site.name}")
        raise BudgetFull(site.name, need, self.used(but=site), budget)

    def eviction_order(self, in_flight: Mapping[str, int]) -> Sequence[Resident]:
        """Who would go first, of the sites that may be evicted now."""
        return eviction_order(self.residents(in_flight))
