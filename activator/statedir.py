"""The state directory: made 0711 (others may pass through it, to routes/, but not list or write it), its
system/ private (0700); refused when another user owns it.

It holds the event log, the admin socket, the lock, Caddy's data and logs: whoever can write in it can stand in
for any of them (a planted admin socket, a swapped database, a symlink where a log is written). A directory that
another user made first (a state_dir in a world-writable place such as /tmp) is theirs to tamper with, so dialup
refuses it rather than use it, and says whose it is. A Caddy that does not run as dialup's user (caddy.manage =
false, under its own systemd unit) reads each site's route file in routes/ (0755, its files 0644): for that,
state_dir must be traversable by it, and nothing else in it needs to be."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from activator.config import ServerConfig
from activator.errors import StateDirRefused

PRIVATE = 0o700  # system/: the event log, the admin socket, the lock, Caddy's logs
PASSABLE = 0o711  # state_dir: others reach routes/ by its name, and see nothing else


def prepare(server: ServerConfig) -> None:
    """Make state_dir (0711) and its system/ directory (0700), whatever the umask, or check the ones there: each
    must be a directory of this user (a symlink to one too, itself this user's or root's), and state_dir must
    not be writable by anyone else. system/ is dialup's own: made 0700 if it was looser (an older dialup made
    it 0755). An existing state_dir's mode is the operator's choice, if no one else can write in it."""
    server.state_dir.parent.mkdir(parents=True, exist_ok=True)
    for path, mode_made in ((server.state_dir, PASSABLE), (server.system_dir, PRIVATE)):
        if _make(path, mode_made):
            continue
        mode = _check(path)
        if path == server.system_dir and mode & 0o077:
            os.chmod(path, PRIVATE)
        elif path == server.state_dir and mode & 0o022:
            raise StateDirRefused(path, None, f"other users can write in it (mode {mode:04o})")


def _make(path: Path, mode: int) -> bool:
    """Make the directory with this mode; False if something is there already."""
    try:
        path.mkdir(mode=mode)  # the umask can only take bits away: never looser than mode, even for an instant
    except FileExistsError:
        return False
    os.chmod(path, mode)  # ... but it may have taken away bits wanted (a umask of 0277 takes the owner's own)
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
