"""The development runner (activator/editor/devcontainer/runner.mjs) run by the real node on an app folder of fake
commands: each kind gets its framework's dev server, a package's own `dev` script wins for node, and a plain
app is started again when a file changes, also after a save replaced it by a rename."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from activator.editor.devserver import RUNNER

NODE = shutil.which("node")


def fake(path: Path, log: Path) -> None:
    """A command that writes its name and arguments to `log`, then waits to be stopped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\nexec sleep 60\n')
    path.chmod(0o755)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    return tmp_path / "app"


def run(app: Path, kind: str) -> subprocess.Popen[bytes]:
    assert NODE is not None, "node is needed (scripts/setup.sh installs it)"
    env = {**os.environ, "DIALUP_APP": str(app), "PORT": "3999", "PATH": f"{app / 'bin'}:{os.environ['PATH']}"}
    return subprocess.Popen([NODE, str(RUNNER), kind], env=env, cwd=app)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    runs: list[subprocess.Popen[bytes]] = []
    yield runs
    for process in runs:
        process.terminate()
        process.wait(10)


def lines(log: Path, count: int, deadline: float = 15.0) -> list[str]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if log.exists() and len(found := log.read_text().splitlines()) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{log}: fewer than {count} lines: {log.read_text() if log.exists() else '(none)'}")


@pytest.mark.parametrize(
    ("kind", "scripts", "expected"),
    [
        ("astro", {}, "astro dev --host 0.0.0.0 --port 3999"),
        ("next", {}, "next dev -H 0.0.0.0 -p 3999"),
        ("node", {"dev": "x", "start": "node server.js"}, "npm run dev"),
    ],
)
def test_each_kind_runs_its_dev_server(
    app: Path, started: list[subprocess.Popen[bytes]], kind: str, scripts: dict[str, str], expected: str
) -> None:
    (app / "package.json").write_text(json.dumps({"scripts": scripts}))
    log = app.parent / "log"
    for name in ("astro", "next"):
        fake(app / "node_modules" / ".bin" / name, log)
    fake(app / "bin" / "npm", log)
    started.append(run(app, kind))
    assert lines(log, 1) == [expected]


def standby_of(runner: subprocess.Popen[bytes], log: Path) -> int | None:
    """The runner's standby: its child node process waiting at the gate (one let go runs the app: it logged)."""
    ran = {line.split()[1] for line in log.read_text().splitlines()}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        mine = int(stat.rpartition(")")[2].split()[1]) == runner.pid
        if mine and b"gate.cjs" in cmdline and entry.name not in ran:
            return int(entry.name)
    return None


def ran(log: Path, pid: int) -> int | None:
    return pid if f"started {pid}" in log.read_text().splitlines() else None


def until_found(find: Callable[[], int | None], deadline: float = 15.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if (found := find()) is not None:
            return found
        time.sleep(0.02)
    raise AssertionError("not found in time")


def test_a_plain_app_starts_again_from_a_standby_when_a_file_changes_also_after_a_rename(
    app: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    log = app.parent / "log"
    (app / "package.json").write_text(json.dumps({"scripts": {"start": "node server.js"}}))
    server = f"require('fs').appendFileSync({json.dumps(str(log))}, `started ${{process.pid}}\\n`);\n"
    (app / "server.js").write_text(server + "setInterval(() => {}, 1000);\n")
    (app / "lib").mkdir()
    runner = run(app, "node")
    started.append(runner)
    assert len(lines(log, 1)) == 1
    for i in range(3):  # a save as the editor makes it: a new file renamed over the old one
        standby = until_found(lambda: standby_of(runner, log))  # node started ahead, waiting at the gate
        (app / "lib" / f".tmp{i}").write_text(f"v{i}")
        os.rename(app / "lib" / f".tmp{i}", app / "lib" / "util.js")
        until_found(functools.partial(ran, log, standby))  # let go: it runs the app
