"""A unix socket that only its owner can connect to, from the moment its file exists."""

from __future__ import annotations

import os
import socket
import tempfile
from contextlib import suppress
from pathlib import Path

MODE = 0o600


def bind_private(path: Path) -> socket.socket:
    """A unix stream socket bound at `path` with mode 0600, replacing a stale one of an earlier run.

    A bind makes its file with the process's umask, so a chmod after it leaves a moment in which anyone may
    connect; and a umask is the whole process's (other threads make files meanwhile). So the socket is bound
    in a fresh 0700 directory beside `path`, made 0600 there, and renamed into place: no looser file is ever
    reachable at `path`."""
    staging = Path(tempfile.mkdtemp(prefix=".", dir=path.parent))  # 0700, ours; its name as short as possible
    staged = staging / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staged))
        os.chmod(staged, MODE)
        os.replace(staged, path)
    except BaseException:
        sock.close()
        raise
    finally:
        with suppress(FileNotFoundError):
            staged.unlink()  # only if the rename did not happen
        staging.rmdir()
    return sock
