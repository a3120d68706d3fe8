"""`dialup recommend`: from the history, each site's limit against its peak memory over the last 7 days, and the
server's price split across the sites over the last 30 (core/cost.py). Reads the database while dialup runs."""

from __future__ import annotations

import aiosqlite

from activator.admin.history import History
from activator.config import Config
from activator.core.cost import allocate, recommend, usage_of
from activator.core.history import HOUR, MINUTE, Point

DAY = 86400
PEAK_DAYS, COST_DAYS = 7, 30
NO_HISTORY = "no history yet: dialup up records it, minute by minute"


async def points_since(history: History, since: float) -> list[Point]:
    """Hours, then the minutes not yet rolled up into them, from `since` on."""
    start = int(since)
    return await history.points(seconds=HOUR, since=start) + await history.points(seconds=MINUTE, since=start)


async def report(config: Config, now: float) -> list[str]:
    if not config.server.db_path.exists():
        return [NO_HISTORY]
    async with aiosqlite.connect(config.server.db_path) as db:
        history = History(db)
        await history.open()
        recent = await points_since(history, now - PEAK_DAYS * DAY)
        month = await points_since(history, now - COST_DAYS * DAY)
    sites = list(config.container_sites)
    if not month:
        return [NO_HISTORY]
    lines = []
    for site in sites:
        peak = max((p.memory_peak for p in recent if p.site == site.name), default=0)
        found = recommend(site.name, site.memory_limit, peak, PEAK_DAYS)
        if found is not None:
            lines.append(str(found))
    if not lines:
        lines.append(f"every site's limit fits its peak of the last {PEAK_DAYS} days")
    covered = max(HOUR, now - min(p.start for p in month))  # the history's span, up to 30 days
    hours = covered / HOUR
    usages = [usage_of(s.name, (p for p in month if p.site == s.name), s.memory_limit) for s in sites]
    monthly, sign = config.cost.monthly, config.cost.currency
    allocation = allocate(monthly, config.budget.memory * hours, usages)
    days = covered / DAY
    lines.append(f"cost over the last {days:.1f} days, as a month ({sign}{monthly:g} for the server):")
    for charge in sorted(allocation.charges, key=lambda c: -c.share):
        money = f"{sign}{charge.cost:.2f}" if monthly else "-"
        share, waste = f"{charge.share:.1%} of the budget's memory-hours", charge.waste / (1 << 20)
        lines.append(f"  {charge.site}: {money} ({share}), {waste:.0f} MiB unused at its peak")
    idle = f"{sign}{allocation.idle:.2f}" if monthly else "-"
    lines.append(f"  idle (reserved by no site): {idle}")
    return lines
