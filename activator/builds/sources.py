"""A deploy's source: a snapshot of it taken first (so what is built is what was hashed, however the folder
changes meanwhile), its content hash, and the safe unpacking of an uploaded tar.gz. Blocking: run in a thread."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from contextlib import suppress
from pathlib import Path, PurePosixPath

# Never part of a source: version control, and installed dependencies (the build installs its own).
SKIPPED = frozenset({".git", "node_modules"})
MAX_FILES = 100_000  # in one source


class BadSource(Exception):
    """A source that cannot be deployed: the reason names the file or the limit."""


def snapshot(source: Path, into: Path, limit: int, *, links: bool = True) -> None:
    """Copy the folder's files into `into` (made here): directories, regular files and symlinks that stay
    inside; never a file outside the source, never more than `limit` bytes or MAX_FILES files. The walk holds
    each directory open and opens each file with O_NOFOLLOW beneath it, so a path swapped for a symlink while
    the copy runs is refused, not followed; the links copied are checked once more in the copy itself."""
    if not source.is_dir():
        raise BadSource(f"{source} is not a folder")
    source = Path(os.path.realpath(source))  # the folder itself may be reached through a symlink; nothing in it
    total = count = 0
    into.mkdir(parents=True, exist_ok=True)
    for here, dirs, files, dir_fd in os.fwalk(source, follow_symlinks=False):
        rel = Path(here).relative_to(source)
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        for name in dirs:
            if not stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
                (into / rel / name).mkdir()
        for name in sorted(files) + [d for d in dirs if stat.S_ISLNK(os.lstat(d, dir_fd=dir_fd).st_mode)]:
            dst = into / rel / name
            mode = os.lstat(name, dir_fd=dir_fd).st_mode
            if stat.S_ISLNK(mode):
                if links:
                    os.symlink(os.readlink(name, dir_fd=dir_fd), dst)
                continue
            if not stat.S_ISREG(mode):
                continue  # sockets, fifos, devices: nothing a site is made of
            count += 1
            if count > MAX_FILES:
                raise BadSource(f"the source has more than {MAX_FILES} files")
            total += _copy_file(name, dir_fd, dst, rel / name, limit - total)
    if links:
        _links_stay_inside(into)


def _copy_file(name: str, dir_fd: int, dst: Path, shown: Path, room: int) -> int:
    """Copy one regular file, opened beneath its folder without following a link (and without blocking, should
    it have become a fifo), if its size fits in `room` bytes; at most that many are copied (it may grow)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise BadSource(f"{shown} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadSource(f"{shown} changed while it was copied")
        if info.st_size > room:
            raise BadSource(f"the source is larger than the limit ({shown} does not fit)")
        copied = 0
        with open(dst, "wb") as out:
            while copied <= room and (chunk := src.read(min(1 << 20, room + 1 - copied))):
                out.write(chunk)
                copied += len(chunk)
        if copied > room:
            raise BadSource(f"the source is larger than the limit ({shown} grew while it was copied)")
    os.chmod(dst, stat.S_IMODE(info.st_mode) & 0o755 | 0o644)
    return copied


def _links_stay_inside(root: Path) -> None:
    """Every symlink in the copy (ours: nobody changes it) resolves to a path inside the copy."""
    top = Path(os.path.realpath(root))
    for here, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(here, name)
            if path.is_symlink():
                real = Path(os.path.realpath(path))
                if real != top and top not in real.parents:
                    shown = path.relative_to(root)
                    raise BadSource(f"{shown} is a symlink to {os.readlink(path)}, outside the source")


def unpack(archive: Path, into: Path, limit: int) -> None:
    """Unpack a tar.gz upload into `into`: files and folders only (no links, devices or fifos), every path
    relative and without '..', each folder opened beneath the one before without following a link, each file
    made anew (O_EXCL); at most MAX_FILES entries and `limit` bytes, counted as they come (an archive of endless
    headers is stopped at the limit). tarfile's own "data" filter is not relied on: Python 3.11 before 3.11.13
    lets some links through it (CVE-2025-4517)."""
    into.mkdir(parents=True, exist_ok=True)
    root = os.open(into, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    total = count = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            while (member := tar.next()) is not None:
                count += 1
                if count > MAX_FILES:
                    raise BadSource(f"the archive has more than {MAX_FILES} entries")
                parts = _safe_parts(member.name)
                if member.isdir():
                    os.close(_folder(root, parts))
                    continue
                if not member.isfile():
                    raise BadSource(f"refused: {member.name} is not a file or a folder (links are not taken)")
                total += member.size
                if total > limit:
                    raise BadSource(f"the archive unpacks to more than {limit >> 20} MiB")
                _write_member(tar, member, root, parts)
    except (tarfile.TarError, EOFError, zlib.error, ValueError) as exc:
        raise BadSource(f"not a readable tar.gz archive: {exc}") from None
    finally:
        os.close(root)


def _safe_parts(name: str) -> list[str]:
    if "\0" in name or "\\" in name:
        raise BadSource(f"refused: {name!r} has a NUL or a backslash")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise BadSource(f"refused: {name} is an absolute path")
    parts = [p for p in path.parts if p != "."]
    if ".." in parts:
        raise BadSource(f"refused: {name} leads out of the archive's folder ('..')")
    return parts


def _folder(root: int, parts: list[str]) -> int:
    """The folder at `parts` beneath `root` (made where missing), opened without following links: an fd."""
    fd = os.dup(root)
    for part in parts:
        with suppress(FileExistsError):
            os.mkdir(part, 0o755, dir_fd=fd)
        try:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            raise BadSource(f"refused: {'/'.join(parts)}: {exc.strerror}") from None
        os.close(fd)
        fd = child
    return fd


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: int, parts: list[str]) -> None:
    if not parts:
        raise BadSource(f"refused: {member.name!r} is not a file name")
    folder = _folder(root, parts[:-1])
    mode = 0o755 if member.mode & 0o111 else 0o644
    try:
        fd = os.open(
            parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder
        )
    except FileExistsError:
        raise BadSource(f"refused: {member.name} appears twice in the archive") from None
    finally:
        os.close(folder)
    data = tar.extractfile(member)
    assert data is not None  # a regular file
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(data, out, 1 << 20)


def content_hash(root: Path) -> str:
    """sha256 over every path, its type, its executable bit and its content, in a fixed order: the same
    files give the same hash wherever they are and whenever they were touched."""
    digest = hashlib.sha256()
    for here, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(here, d))]):
            path = Path(here, name)
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                digest.update(f"L {rel} {os.readlink(path)}\0".encode())
            elif stat.S_ISREG(info.st_mode):
                digest.update(f"F {rel} {info.st_mode & 0o111 != 0}\0".encode())
                with path.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        digest.update(chunk)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(here, d))]
    return digest.hexdigest()
