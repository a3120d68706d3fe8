"""The admin API's unix socket: mode 0600 from the moment it exists, whatever the umask."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from activator.privatesocket import bind_private


def test_the_socket_is_0600_and_answers_even_under_an_open_umask(tmp_path: Path) -> None:
    path = tmp_path / "dialup.sock"
    old = os.umask(0)  # a plain bind would make the file 0777: anyone could connect until a chmod
    try:
        sock = bind_private(path)
    finally:
        os.umask(old)
    try:
        info = os.stat(path)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert os.listdir(tmp_path) == ["dialup.sock"], "the staging directory is gone"
        sock.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            accepted, _ = sock.accept()
            accepted.close()
    finally:
        sock.close()


def test_a_stale_socket_of_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "dialup.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # its file stays, as after a killed activator
    os.chmod(path, 0o666)

    sock = bind_private(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        sock.listen()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
    finally:
        sock.close()
