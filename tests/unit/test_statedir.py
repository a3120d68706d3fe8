"""The state directory: made 0711 (system/ 0700), refused when another user owns it (tests run as root)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from activator import statedir
from activator.cli import main
from activator.config import ServerConfig
from activator.errors import StateDirRefused
from activator.proxy.routefiles import RouteFiles

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests chown directories to another user: run them as root", pytrace=False)


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o277])
def test_the_state_and_system_directories_are_made_0711_and_0700_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    server = ServerConfig(state_dir=tmp_path / "deep" / "state")
    with umask(mask):
        statedir.prepare(server)
    assert (mode(server.state_dir), mode(server.system_dir)) == (0o711, 0o700)
    assert server.system_dir.stat().st_uid == os.geteuid()


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_caddy_of_another_user_reads_route_files_and_nothing_else(mask: int) -> None:
    """caddy.manage = false, Caddy under its own unit as user caddy: it must read routes/SITE, and only that."""
    base = Path(tempfile.mkdtemp(prefix="du-perm-", dir="/tmp"))  # not pytest's tmp_path: that is 0700
    try:
        os.chmod(base, 0o755)
        server = ServerConfig(state_dir=base / "state")
        with umask(mask):
            statedir.prepare(server)
            RouteFiles(server.routes_dir).write("blog", "127.0.0.1:8123")
            (server.system_dir / "dialup.db").write_text("private")

        def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(command, capture_output=True, text=True, user=NOBODY, group=NOBODY, timeout=10)

        assert as_nobody("cat", str(server.routes_dir / "blog")).stdout == "127.0.0.1:8123\n"
        assert as_nobody("cat", str(server.system_dir / "dialup.db")).returncode != 0
        assert as_nobody("ls", str(server.state_dir)).returncode != 0  # passed through, not listed
    finally:
        shutil.rmtree(base)


def test_existing_directories_of_this_user_are_used_and_system_is_made_private(tmp_path: Path) -> None:
    server = ServerConfig(state_dir=tmp_path / "state")
    server.system_dir.mkdir(parents=True)
    os.chmod(server.state_dir, 0o755)
    os.chmod(server.system_dir, 0o755)  # as an older dialup made it
    (server.system_dir / "dialup.db").write_text("kept")

    statedir.prepare(server)

    assert (mode(server.state_dir), mode(server.system_dir)) == (0o755, 0o700)  # state_dir: the operator's choice
    assert (server.system_dir / "dialup.db").read_text() == "kept"


def test_a_state_directory_another_user_owns_is_refused_naming_it_and_its_owner(tmp_path: Path) -> None:
    server = ServerConfig(state_dir=tmp_path / "state")
    server.state_dir.mkdir()
    os.chown(server.state_dir, NOBODY, NOBODY)

    with pytest.raises(StateDirRefused) as refused:
        statedir.prepare(server)

    assert (refused.value.path, refused.value.owner) == (server.state_dir, NOBODY)
    message = str(refused.value)
    assert str(server.state_dir) in message and f"uid {NOBODY}" in message and "another user owns it" in message
    assert not server.system_dir.exists(), "nothing is made in a refused directory"


def test_a_system_directory_another_user_owns_is_refused(tmp_path: Path) -> None:
    server = ServerConfig(state_dir=tmp_path / "state")
    server.system_dir.mkdir(parents=True, mode=0o700)
    os.chmod(server.state_dir, 0o700)
    os.chown(server.system_dir, NOBODY, NOBODY)

    with pytest.raises(StateDirRefused) as refused:
        statedir.prepare(server)

    assert (refused.value.path, refused.value.owner) == (server.system_dir, NOBODY)


def test_a_symlink_another_user_planted_is_refused_even_to_a_directory_of_ours(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    server = ServerConfig(state_dir=tmp_path / "state")
    server.state_dir.symlink_to(ours)
    os.chown(server.state_dir, NOBODY, NOBODY, follow_symlinks=False)

    with pytest.raises(StateDirRefused, match="symlink"):
        statedir.prepare(server)


@pytest.mark.parametrize("loose", [0o777, 0o1777, 0o775])
def test_a_state_directory_others_can_write_in_is_refused(tmp_path: Path, loose: int) -> None:
    server = ServerConfig(state_dir=tmp_path / "state")
    server.state_dir.mkdir()
    os.chmod(server.state_dir, loose)

    with pytest.raises(StateDirRefused, match="other users can write in it"):
        statedir.prepare(server)


def test_a_file_in_its_place_is_refused(tmp_path: Path) -> None:
    server = ServerConfig(state_dir=tmp_path / "state")
    server.state_dir.write_text("")
    with pytest.raises(StateDirRefused, match="not a directory"):
        statedir.prepare(server)


@pytest.fixture
def loop_policy() -> Iterator[None]:
    """`dialup up` installs uvloop's policy for the process: put the test's back."""
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


@pytest.mark.parametrize("command", ["up", "status"])
def test_up_and_status_exit_1_naming_the_path_and_its_owner(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str], loop_policy: None
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, NOBODY, NOBODY)
    config = tmp_path / "dialup.toml"
    config.write_text(f'[server]\nstate_dir = "{state}"\n[caddy]\nadmin = "unix/{tmp_path}/caddy.sock"\n')

    assert main([command, "-c", str(config)]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"dialup: refusing the state directory {state}: another user owns it"), err
    assert f"uid {NOBODY}" in err and err.count("\n") == 1
    assert os.listdir(state) == []
