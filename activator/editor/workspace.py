"""A workspace's files, reached only beneath it: the editor's reads and writes on a user's behalf.

The development container runs the user's code, which can plant symlinks anywhere in the workspace. So no
path is ever resolved by the kernel from the top: each folder is opened beneath the one before with
O_NOFOLLOW | O_DIRECTORY (a link where a folder should be is refused, not followed), files are opened with
O_NOFOLLOW, and a write goes to a new temporary file beside its target (O_EXCL) that is renamed into place
(a rename replaces a link, never what it points to). Whole-file writes carry the hash of the version they
edited; a write based on another version is refused with the current content, never applied. Blocking
(file system calls): call from a thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PROTECTED = frozenset({".git", "node_modules"})  # read, never written (version control, installed packages)
TEMP_PREFIX = ".dialup-write-"  # a write's temporary file, beside its target
RECOUNT = 10.0  # seconds: how stale the count of a workspace's files and bytes may be when a write is checked


class PathRefused(Exception):
    """A path that may not be used: it names no place beneath the workspace, or one that may not be written."""


class NotFound(Exception):
    pass


class Conflict(Exception):
    """A write based on a version that is no longer the file's: nothing was written. `current` is the file's
    content now (None: there is no such file), for the client's side-by-side view."""

    def __init__(self, path: str, current: bytes | None, current_hash: str | None) -> None:
        self.path, self.current, self.current_hash = path, current, current_hash
        super().__init__(f"{path}: changed since the version edited")


@dataclass(frozen=True)
class Limits:
    file_size: int = 5 << 20  # one file
    files: int = 20_000  # in a workspace
    total: int = 500 << 20  # bytes in a workspace


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str  # file | dir | link (a link is listed, never followed)
    size: int


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parts_of(path: str) -> tuple[str, ...]:
    """The path's names, or PathRefused: relative, no '..', no NUL or backslash, no empty name."""
    if not path or "\0" in path or "\\" in path:
        raise PathRefused(f"{path!r}: empty, or with a NUL or a backslash")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise PathRefused(f"{path}: an absolute path")
    parts = tuple(p for p in pure.parts if p != ".")
    if not parts or ".." in parts:
        raise PathRefused(f"{path}: must name a place beneath the workspace, without '..'")
    return parts


class Workspace:
    """One site's workspace folder. Every operation resolves its path from an fd of the workspace itself."""

    def __init__(self, root: Path, limits: Limits = Limits(), owner: tuple[int, int] | None = None) -> None:
        self.root, self.limits = root, limits
        # Who owns what is written (files and folders made here): the development container's user, which must
        # be able to change them too. None: whoever runs this.
        self.owner = owner
        self._usage: tuple[float, int, int] | None = None  # when counted, files, bytes (see _check_room)
        # Changes are made one at a time (the tabs of a site share this Workspace): a write's check of the version
        # edited and its rename are one step, and no other change of ours comes between.
        self._changing = threading.Lock()

    # -- reading ----------------------------------------------------------------------------------

    def read(self, path: str) -> tuple[bytes, str]:
        """The file's content and hash."""
        parts = parts_of(path)
        with self._folder(parts[:-1]) as folder:
            fd = self._open(folder, parts[-1], os.O_RDONLY, path)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PathRefused(f"{path}: not a file")
            if info.st_size > self.limits.file_size:
                raise PathRefused(f"{path}: larger than {self.limits.file_size >> 20} MiB")
            data = f.read(self.limits.file_size + 1)
        return data, content_hash(data)

    def tree(self) -> list[Entry]:
        """Every entry, links listed as links (never followed), .git and node_modules left out; an entry that
        goes away while it is listed is left out. A tree nested deeper than Python can walk is refused."""
        try:
            return self._tree()
        except RecursionError:
            raise PathRefused("the workspace's folders are nested too deeply to list") from None

    def _tree(self) -> list[Entry]:
        entries: list[Entry] = []
        with self._folder(()) as top:
            for here, dirs, files, dir_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
                dirs[:] = sorted(d for d in dirs if d not in PROTECTED)
                rel = PurePosixPath(here)
                for name in dirs + sorted(files):
                    try:
                        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed meanwhile (a dev server's own files come and go)
                    kind = "link" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode) else "file"
                    if name.startswith(TEMP_PREFIX):
                        continue
                    entries.append(Entry(str(rel / name), kind, info.st_size if kind == "file" else 0))
                dirs[:] = [d for d in dirs if _is_folder(d, dir_fd)]
        return entries

    # -- writing ----------------------------------------------------------------------------------

    def write(self, path: str, data: bytes, base_hash: str | None) -> str:
        """Replace the file's whole content. `base_hash`: the version the client edited (None: it creates
        the file, which must not exist). Raises Conflict (with the current content) when the file is another
        version now. Returns the new hash."""
        parts = self._writable(path)
        if len(data) > self.limits.file_size:
            raise PathRefused(f"{path}: larger than {self.limits.file_size >> 20} MiB")
        with self._changing, self._folder(parts[:-1], create=True) as folder:
            current = self._current(folder, parts[-1], path)
            if (current[1] if current else None) != base_hash:
                raise Conflict(path, current[0] if current else None, current[1] if current else None)
            growth = len(data) - (len(current[0]) if current else 0)
            self._check_room(growth, new_file=current is None)
            self._replace(folder, parts[-1], data, self.owner)
            if self._usage is not None:
                counted, files, total = self._usage
                self._usage = counted, files + (current is None), total + growth
        return content_hash(data)

    def rename(self, old: str, new: str) -> None:
        """Move a file or folder; the new name must be free (no silent overwrite, of a link or anything)."""
        src, dst = self._writable(old), self._writable(new)
        with self._changing, self._folder(src[:-1]) as a, self._folder(dst[:-1], create=True) as b:
            # A link moved elsewhere points elsewhere: one that pointed inside could point out. Links (and
            # folders holding any) stay where they are.
            try:
                moved = os.stat(src[-1], dir_fd=a, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(old) from None
            if stat.S_ISLNK(moved.st_mode) or (stat.S_ISDIR(moved.st_mode) and _holds_links(src[-1], a)):
                raise PathRefused(f"{old}: a link, or a folder holding links (not moved)")
            try:
                os.stat(dst[-1], dir_fd=b, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise PathRefused(f"{new}: exists already")
            try:
                os.rename(src[-1], dst[-1], src_dir_fd=a, dst_dir_fd=b)
            except FileNotFoundError:
                raise NotFound(old) from None

    def delete(self, path: str) -> None:
        """A file or a link (the link itself, never its target), or an empty folder."""
        parts = self._writable(path)
        with self._changing, self._folder(parts[:-1]) as folder:
            try:
                info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(path) from None
            if stat.S_ISDIR(info.st_mode):
                try:
                    os.rmdir(parts[-1], dir_fd=folder)
                except OSError as exc:
                    raise PathRefused(f"{path}: {exc.strerror}") from None
            else:
                os.unlink(parts[-1], dir_fd=folder)

    # -- beneath the workspace ------------------------------------------------------------------------

    @contextmanager
    def _folder(self, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
        """An fd of the folder at `parts` beneath the root, each step opened without following a link."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, part in enumerate(parts):
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    else:
                        if self.owner is not None:
                            os.chown(part, *self.owner, dir_fd=fd, follow_symlinks=False)
                try:
                    child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    raise NotFound("/".join(parts[: i + 1])) from None
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(f"{'/'.join(parts[: i + 1])}: a link or a file, not a folder") from None
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def _open(folder: int, name: str, flags: int, shown: str) -> int:
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except FileNotFoundError:
            raise NotFound(shown) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathRefused(f"{shown}: a link (not followed)") from None
            raise

    def _current(self, folder: int, name: str, shown: str) -> tuple[bytes, str] | None:
        try:
            fd = self._open(folder, name, os.O_RDONLY, shown)
        except NotFound:
            return None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PathRefused(f"{shown}: not a file")
            if info.st_size > self.limits.file_size:  # never read whole: a sparse file can claim any size
                raise PathRefused(f"{shown}: larger than {self.limits.file_size >> 20} MiB")
            data = f.read(self.limits.file_size + 1)
        return data, content_hash(data)

    @staticmethod
    def _replace(folder: int, name: str, data: bytes, owner: tuple[int, int] | None) -> None:
        """A new file beside the target, renamed over it: readers see the old content or the new, and a link at
        the target's name is replaced, not written through."""
        tmp = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
        try:
            if owner is not None:
                os.fchown(fd, *owner)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)
            raise

    def _writable(self, path: str) -> tuple[str, ...]:
        parts = parts_of(path)
        if PROTECTED & set(parts):
            raise PathRefused(f"{path}: inside {', '.join(sorted(PROTECTED & set(parts)))} (not written)")
        if parts[-1].startswith(TEMP_PREFIX):
            raise PathRefused(f"{path}: a name dialup uses for its own writes")
        return parts

    def _check_room(self, growth: int, *, new_file: bool) -> None:
        # Counted by a walk at most every RECOUNT seconds (others change the workspace too: the dev server, npm),
        # and kept up to date by this workspace's own writes between: a save does not walk the whole tree.
        now = time.monotonic()
        if self._usage is None or now - self._usage[0] > RECOUNT:
            files = total = 0
            for entry in self.tree():
                if entry.kind == "file":
                    files, total = files + 1, total + entry.size
            self._usage = (now, files, total)
        _, files, total = self._usage
        if new_file and files + 1 > self.limits.files:
            raise PathRefused(f"the workspace has {self.limits.files} files already")
        if total + growth > self.limits.total:
            raise PathRefused(f"the workspace would be larger than {self.limits.total >> 20} MiB")


def _is_folder(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _holds_links(name: str, parent_fd: int) -> bool:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            if any(stat.S_ISLNK(os.stat(n, dir_fd=dir_fd, follow_symlinks=False).st_mode) for n in dirs + files):
                return True
    finally:
        os.close(fd)
    return False
