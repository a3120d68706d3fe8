"""`dialup recommend` on a history written to a real SQLite file: the limits that fit, and the money split."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from activator.admin.history import History
from activator.admin.report import NO_HISTORY, report
from activator.config import load_config
from activator.core.history import HOUR, Minutes

MiB = 1 << 20
NOW = 1_800_000_000 - 1_800_000_000 % HOUR
CONFIG = """
[server]
state_dir = "state"
[budget]
memory = "1000MiB"
[cost]
monthly = 25
[[sites]]
name = "blog"
hosts = ["blog.test"]
image = "blog"
port = 8080
[[sites]]
name = "api"
hosts = ["api.test"]
image = "api"
port = 8080
kind = "node"
"""


async def test_recommend_prints_fitting_limits_and_each_sites_share_of_the_price(tmp_path: Path) -> None:
    path = tmp_path / "dialup.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert await report(config, NOW) == [NO_HISTORY]
    config.server.db_path.parent.mkdir(parents=True)
    minutes = Minutes()
    for tick in range(0, 10 * HOUR, 60):  # 10 hours of readings, a minute apart: blog always up, api half
        ts = NOW - 10 * HOUR + tick
        minutes.memory("blog", ts, (21 if tick == 3600 else 15) * MiB, 64 * MiB, 60.0)
        if tick < 5 * HOUR:
            minutes.memory("api", ts, 250 * MiB, 256 * MiB, 60.0)
    async with aiosqlite.connect(config.server.db_path) as db:
        history = History(db)
        await history.open()
        await history.write(minutes.take(NOW))
    lines = await report(config, NOW)
    assert lines[0] == "blog's peak in 7 days was 21 MiB of 64 MiB: a 32 MiB limit would hold it"
    assert lines[1] == "api's peak in 7 days was 250 MiB of 256 MiB: a 384 MiB limit would give it room"
    # 10 hours of a 1000 MiB budget: blog reserved 64 MiB for all of it, api 256 for half.
    assert lines[2] == "cost over the last 0.4 days, as a month ($25 for the server):"
    assert lines[3] == "  api: $3.20 (12.8% of the budget's memory-hours), 6 MiB unused at its peak"
    assert lines[4] == "  blog: $1.60 (6.4% of the budget's memory-hours), 43 MiB unused at its peak"
    assert lines[5] == "  idle (reserved by no site): $20.20"
