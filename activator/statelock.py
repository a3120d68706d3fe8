"""One `dialup up` per state directory: an exclusive lock on state_dir/system/dialup.lock for the life of the
process. Two activators on one state directory would fight over the same containers, Caddy routes and admin socket.

The lock is an flock(2): the kernel drops it when the process exits, however it exits, so a file left behind by a
killed activator never blocks the next one. The file holds the pid of the process holding the lock, to name it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from activator.errors import AlreadyRunning

LOCK_FILE = "dialup.lock"


class StateLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StateLock:
        """Take the lock at once, or raise AlreadyRunning naming the file and the process that holds it."""
        # os.open's descriptors are not inherited by child processes: the Caddy that `dialup up` starts outlives it
        # and must not keep the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        # The file stays: removing it would let a process that opened it just before take a lock on a file that
        # no longer has a name, while the next one locks a new file of the same name.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The pid the holder wrote; None in the instant between its lock and its write."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


_HELD: dict[Path, StateLock] = {}  # what this process holds: taking a lock again in it is no conflict


def hold(system_dir: Path) -> StateLock:
    """Take system_dir's lock for the rest of this process's life (see the module's docstring)."""
    path = system_dir.absolute() / LOCK_FILE
    lock = _HELD.get(path)
    if lock is None or not lock.held:
        lock = _HELD[path] = StateLock(path).acquire()
    return lock
