"""The recorder on a fake wall clock and a real SQLite: observations land in their minute, written once it ends,
and a restart's minute adds to the one written before it."""

from __future__ import annotations

from pathlib import Path

import aiosqlite

from activator.admin.history import History
from activator.admin.recorder import Recorder
from activator.core.history import HOUR, MINUTE
from activator.proxy.accesslog import Entry, parse_line

T0 = 1_800_000_000 - 1_800_000_000 % HOUR


class Wall:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


async def test_observations_are_written_by_minute_once_it_ends(tmp_path: Path) -> None:
    wall = Wall()
    async with aiosqlite.connect(tmp_path / "h.db") as db:
        history = History(db)
        await history.open()
        recorder = Recorder(history, wall)
        for i in range(30):
            recorder.request("blog", T0 + i, 200 if i % 10 else 502, 0.004)
        wall.now = T0 + 20
        recorder.memory({"blog": 21 << 20, "api": 90 << 20}, {"blog": 64 << 20, "api": 256 << 20})
        recorder.state("blog", 20.0, failing=False)
        recorder.cold_start("api", 310.0)
        wall.now = T0 + 59
        await recorder.flush()
        assert await history.points(seconds=MINUTE) == []  # the minute is not over
        wall.now = T0 + 61
        recorder.request("blog", T0 + 60.5, 200, 0.02)
        await recorder.flush()
        blog, api = sorted(await history.points(seconds=MINUTE), key=lambda p: p.site, reverse=True)
        assert (blog.requests, blog.errors, blog.percentile(0.5), blog.memory_peak) == (30, 3, 5.0, 21 << 20)
        assert blog.uptime == 1.0 and blog.memory_limit == 64 << 20
        assert (api.cold_starts, api.cold_start_ms, api.requests) == (1, 310.0, 0)
        await recorder.close()  # the minute under way, written at once
        later = [p for p in await history.points(seconds=MINUTE) if p.start == T0 + MINUTE]
        assert [(p.site, p.requests) for p in later] == [("blog", 1)]
        again = Recorder(history, wall)  # a restart: the same minute goes on
        again.request("blog", T0 + 61, 200, 0.02)
        await again.close()
        (minute,) = [p for p in await history.points(seconds=MINUTE) if p.start == T0 + MINUTE]
        assert minute.requests == 2


def test_an_access_log_line_gives_host_start_duration_and_status() -> None:
    line = b'{"ts": 1800000010.5, "duration": 0.25, "status": 503, "request": {"host": "blog.test"}}'
    assert parse_line(line) == Entry("blog.test", 1800000010.25, 0.25, 503)
    assert parse_line(b'{"msg": "not an access entry"}') is None
