"""The state directory: private (0700) when dialup makes it, refused when another user owns it.

It holds the event log, the admin socket, the lock, Caddy's data and logs: whoever can write in it can stand in
for any of them (a planted admin socket, a swapped database, a symlink where a log is written). A directory that
another user made first (a state_dir in a world-writable place such as /tmp) is theirs to tamper with, so dialup
refuses it rather than use it, and says whose it is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from activator.config import ServerConfig
from activator.errors import StateDirRefused

PRIVATE = 0o700


def prepare(server: ServerConfig) -> None:
    """Make state_dir and its system/ directory (0700, whatever the umask), or check the ones there: each must be
    a directory of this user (a symlink to one too, itself this user's or root's), and state_dir must not be
    writable by anyone else. system/ is dialup's own: made 0700 if it was looser (an older dialup made it 0755)."""
    server.state_dir.parent.mkdir(parents=True, exist_ok=True)
    for path in (server.state_dir, server.system_dir):
        if _make(path):
            continue
        mode = _check(path)
        if path == server.system_dir and mode & 0o077:
            os.chmod(path, PRIVATE)
        elif path == server.state_dir and mode & 0o022:
            raise StateDirRefused(path, None, f"other users can write in it (mode {mode:04o})")


def _make(path: Path) -> bool:
    """Make the directory, 0700; False if something is there already."""
    try:
        path.mkdir(mode=PRIVATE)  # the umask can only take bits away: never looser than 0700, even for an instant
    except FileExistsError:
        return False
    os.chmod(path, PRIVATE)  # ... but it may have taken away the owner's own (a umask of 0277)
    return True


def _check(path: Path) -> int:
    """The mode of the directory at path, if this user may trust it; else StateDirRefused."""
    me = os.geteuid()
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (me, 0):
        raise StateDirRefused(path, link.st_uid, "it is a symlink another user owns")
    target = os.stat(path)
    if not stat.S_ISDIR(target.st_mode):
        raise StateDirRefused(path, target.st_uid, "it is not a directory")
    if target.st_uid != me:
        raise StateDirRefused(path, target.st_uid, "another user owns it")
    return stat.S_IMODE(target.st_mode)
