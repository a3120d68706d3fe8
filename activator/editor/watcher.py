"""Changes made in a workspace by anyone (another tab, the dev server, a formatter), from inotify, as the
relative paths that changed: what the editor pushes to its open tabs.

Linux's inotify through libc (the standard library has no binding). Each folder is watched through an fd
opened beneath the workspace without following links (its /proc/self/fd path, so a folder swapped for a
link meanwhile is not watched through it); links are never watched. Events are read on the event loop
(add_reader), never blocking it; the first walk of the tree runs in a thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from activator.builds.sources import SKIPPED
from activator.editor.workspace import TEMP_PREFIX

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_IGNORED = 0x100, 0x200, 0x400, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_ISDIR, IN_Q_OVERFLOW = 0x01000000, 0x02000000, 0x40000000, 0x4000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
MAX_FOLDERS = 10_000  # watched in one workspace at most (the kernel's own limit is per user: 8,192 by default)
MAX_DEPTH = 64  # folders nested deeper are not watched (user code can nest them without end)

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class Watcher:
    """Calls `changed(path)` for every file created, written, moved or deleted beneath the workspace;
    `changed("")` when the kernel's queue overflowed (the client should list the tree again)."""

    def __init__(self, root: Path, changed: Callable[[str], None]) -> None:
        self.root, self._changed = root, changed
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._dirs: dict[int, PurePosixPath] = {}  # watch descriptor -> folder, relative to the root

    async def start(self) -> None:
        await asyncio.to_thread(self._watch_tree, PurePosixPath("."))
        asyncio.get_running_loop().add_reader(self._fd, self._read)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)

    def _watch_tree(self, top: PurePosixPath) -> None:
        for rel in self._folders(top):
            self._watch(rel)

    def _folders(self, top: PurePosixPath) -> list[PurePosixPath]:
        """`top` and the folders beneath it (not through links, not .git or node_modules), walked without
        recursion and bounded: at most MAX_FOLDERS in all, MAX_DEPTH deep."""
        found: list[PurePosixPath] = []
        stack = [top]
        while stack and len(self._dirs) + len(found) < MAX_FOLDERS:
            rel = stack.pop()
            fd = self._open_beneath(rel)
            if fd is None:
                continue  # a link, or gone meanwhile: its parent's event says so
            found.append(rel)
            try:
                with os.scandir(fd) as entries:
                    subfolders = [e.name for e in entries if e.is_dir(follow_symlinks=False) and e.name not in SKIPPED]
            except OSError:
                continue
            finally:
                os.close(fd)
            if len(rel.parts) < MAX_DEPTH:
                stack.extend(rel / name for name in subfolders)
        return found

    def _watch(self, rel: PurePosixPath) -> None:
        fd = self._open_beneath(rel)
        if fd is None:
            return
        try:
            wd = _libc.inotify_add_watch(self._fd, f"/proc/self/fd/{fd}".encode(), MASK | IN_ONLYDIR)
        finally:
            os.close(fd)
        if wd >= 0:
            self._dirs[wd] = rel

    def _open_beneath(self, rel: PurePosixPath) -> int | None:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for part in (p for p in rel.parts if p != "."):
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError:
                os.close(fd)
                return None  # a link, or gone
            os.close(fd)
            fd = child
        return fd

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return
            raise
        offset = 0
        while offset + HEADER.size <= len(data):
            wd, mask, _cookie, length = HEADER.unpack_from(data, offset)
            name = data[offset + HEADER.size : offset + HEADER.size + length].rstrip(b"\0").decode(errors="replace")
            offset += HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                self._changed("")
                continue
            folder = self._dirs.get(wd)
            if folder is None or mask & IN_IGNORED:
                self._dirs.pop(wd, None)
                continue
            if not name or name.startswith(TEMP_PREFIX):
                continue
            rel = folder / name
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and name not in SKIPPED:
                self._watch_tree(rel)  # a new folder (and its own folders, if moved in whole): watched
            self._changed(str(rel))
