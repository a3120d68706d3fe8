"""The guard of a managed Caddy, through fakes of the process and admin API it watches: a Caddy that cannot be
started again is tried again further and further apart, one log line each time; one started with settings the
config no longer has is stopped and started again."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from activator.config import load_config
from activator.model import EventKind
from activator.proxy.caddy import CaddyError
from activator.proxy.guard import RETRY_MOST, CaddyGuard
from activator.proxy.process import CaddyProcess
from activator.testing.clock import FakeClock


class FakeProcess:
    """A managed Caddy: `alive` is the test's to set; `start` fails while `fails` says so."""

    pidfile = "caddy.pid"

    def __init__(self, *, alive: bool, changed: list[str] | None = None) -> None:
        self.is_alive, self.changed, self.fails, self.starts = alive, changed or [], False, 0

    def alive(self) -> bool:
        return self.is_alive

    def pid(self) -> int:
        return 4242

    def identity(self) -> tuple[int, str]:
        return (4242, "1234")

    def gone(self, identity: tuple[int, str]) -> bool:
        return not self.is_alive

    def changed_settings(self) -> list[str]:
        return self.changed

    def start(self) -> int:
        self.starts += 1
        if self.fails:
            raise CaddyError("Caddy cannot listen on 127.0.0.1:80 (Address already in use)")
        self.is_alive, self.changed = True, []
        return 4243


class FakeAdmin:
    address = "unix//run/caddy.sock"

    def __init__(self, process: FakeProcess) -> None:
        self.process, self.calls = process, []

    async def alive(self) -> bool:
        return self.process.is_alive

    async def wait_alive(self, limit: float) -> None:
        assert self.process.is_alive

    async def request(self, method: str, path: str, body: object = None) -> Any:
        self.calls.append((method, path))
        if (method, path) == ("POST", "/stop"):
            self.process.is_alive = False


class FakeRoutes:
    def __init__(self) -> None:
        self.loads = 0

    async def load(self) -> None:
        self.loads += 1


def make(process: FakeProcess) -> tuple[CaddyGuard, FakeAdmin, FakeRoutes, list[EventKind], FakeClock]:
    clock, admin, routes, events = FakeClock(), FakeAdmin(process), FakeRoutes(), []

    async def record(site: str, kind: EventKind, reason: str, ms: float | None, detail: str) -> None:
        events.append(kind)

    guard = CaddyGuard(admin, process, routes, record, clock)  # type: ignore[arg-type]
    return guard, admin, routes, events, clock


async def test_a_caddy_that_cannot_start_is_tried_again_further_apart_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    process = FakeProcess(alive=False)
    process.fails = True
    guard, _, routes, events, clock = make(process)
    tried_at = []
    began = clock.monotonic()
    with caplog.at_level(logging.ERROR, logger="activator.proxy.guard"):
        for _ in range(400):  # 100 s of the guard's quarter-second ticks
            before = process.starts
            await guard.tick()
            if process.starts > before:
                tried_at.append(round(clock.monotonic() - began, 2))
            await clock.advance(0.25)
    assert tried_at == [0, 1, 3, 7, 15, 31, 61, 91]  # waits of 1, 2, 4, 8, 16, then 30 s at most
    assert RETRY_MOST == 30
    lines = [r.getMessage() for r in caplog.records if r.name == "activator.proxy.guard"]
    assert len([m for m in lines if m.startswith("Caddy could not be started again")]) == len(tried_at)
    assert not any(r.exc_info for r in caplog.records)  # a line, not a traceback
    assert "Address already in use" in lines[-1] and not guard.up and routes.loads == 0
    process.fails = False  # the port is free again: at the next try, Caddy is back and given its config
    for _ in range(200):
        await guard.tick()
        if guard.up:
            break
        await clock.advance(0.25)
    assert guard.up and routes.loads == 1 and events == [EventKind.CADDY_RESTARTED] and guard.restarts == 1


async def test_a_caddy_started_with_other_settings_is_stopped_and_started_again() -> None:
    process = FakeProcess(alive=True, changed=["max_connections"])
    guard, admin, _, _, _ = make(process)
    await guard.ensure()
    assert admin.calls == [("POST", "/stop")] and process.starts == 1 and guard.up


async def test_a_caddy_started_with_the_configs_settings_is_kept() -> None:
    process = FakeProcess(alive=True)
    guard, admin, _, _, _ = make(process)
    await guard.ensure()
    assert admin.calls == [] and process.starts == 0 and guard.up and guard.managed


def test_gone_waits_for_the_process_to_exit_not_for_its_command_line(tmp_path: Path) -> None:
    """An exiting process's command line empties before its files close (its listening socket among them): the
    guard starts the next Caddy only once the old one is a zombie or reaped, never on `not alive()`."""
    path = tmp_path / "dialup.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n[caddy]\npass_listener = false\n')
    caddy = CaddyProcess(load_config(path))
    caddy.system_dir.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])  # stands for a Caddy a dialup of before started: not our child
    try:
        caddy.pidfile.write_text(f"{other.pid}\n")
        identity = caddy.identity()
        assert identity is not None and identity[0] == other.pid
        assert not caddy.gone(identity) and not caddy.alive()  # not a caddy: alive() refuses it; gone() waits
        other.kill()
        deadline = time.monotonic() + 10
        while not caddy.gone(identity):  # a zombie until reaped: its files are closed
            assert time.monotonic() < deadline, "a killed process never showed as gone"
            time.sleep(0.01)
        assert Path(f"/proc/{other.pid}").exists()  # ... not reaped yet
    finally:
        other.kill()
        other.wait(10)
    assert caddy.gone(identity)  # reaped: no /proc entry
