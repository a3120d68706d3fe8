"""One `dialup up` per state directory: the lock, taken by real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from activator import statelock
from activator.cli import main
from activator.errors import AlreadyRunning
from activator.statelock import LOCK_FILE, StateLock

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 10.0

# Takes the lock, says so, and holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from activator.statelock import StateLock
StateLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def holder_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(LIMIT)


def test_a_second_process_cannot_take_the_lock_and_is_told_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / LOCK_FILE
    with holder_process(path) as other:
        with pytest.raises(AlreadyRunning) as caught:
            StateLock(path).acquire()
        assert (caught.value.path, caught.value.pid) == (path, other.pid)
        assert str(path) in str(caught.value) and f"pid {other.pid}" in str(caught.value)
        assert path.read_text() == f"{other.pid}\n"
    # The holder is gone (killed, not cleaned up): the kernel dropped its lock, and the file left behind is no bar.
    with StateLock(path) as lock:
        assert lock.held
        assert path.read_text() == f"{os.getpid()}\n"


def test_a_child_process_does_not_keep_the_lock(tmp_path: Path) -> None:
    # `dialup up` starts Caddy, which outlives it: Caddy must not hold the lock once the activator is gone.
    path = tmp_path / LOCK_FILE
    lock = StateLock(path).acquire()
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, close_fds=False
    )
    try:
        lock.release()
        with holder_process(path) as other:  # it takes the lock while the child still runs
            assert path.read_text() == f"{other.pid}\n"
    finally:
        child.kill()
        child.wait(LIMIT)


def test_hold_takes_the_lock_once_per_process(tmp_path: Path) -> None:
    lock = statelock.hold(tmp_path)
    try:
        assert statelock.hold(tmp_path) is lock  # serve() run twice in one process is no conflict
        with pytest.raises(AlreadyRunning):
            StateLock(tmp_path / LOCK_FILE).acquire()  # another open of the file is
    finally:
        lock.release()


def test_down_refuses_while_up_holds_the_lock_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`down` beside a running `up` would be undone at once (its Caddy restarted, persistent sites started)."""
    config = tmp_path / "dialup.toml"
    config.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n[caddy]\nadmin = "unix/{tmp_path}/c.sock"\n')
    system = tmp_path / "state" / "system"
    system.mkdir(parents=True)

    def no_docker(*args: object, **kwargs: object) -> None:
        raise AssertionError("down reached Docker while another dialup holds the state directory")

    monkeypatch.setattr("activator.cli.DockerRuntime", no_docker)
    with holder_process(system / LOCK_FILE) as up:
        assert main(["down", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"pid {up.pid} holds the lock {system / LOCK_FILE}: stop it first" in err and err.count("\n") == 1
