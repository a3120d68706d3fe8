"""A deploy's source: a snapshot of it taken first (so what is built is what was hashed, however the folder
changes meanwhile), its content hash, and the safe unpacking of an uploaded tar.gz. Blocking: run in a thread."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from pathlib import Path

# Never part of a source: version control, and installed dependencies (the build installs its own).
SKIPPED = frozenset({".git", "node_modules"})
MAX_FILES = 100_000  # in one source


class BadSource(Exception):
    """A source that cannot be deployed: the reason names the file or the limit."""


def snapshot(source: Path, into: Path, limit: int) -> None:
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
                os.symlink(os.readlink(name, dir_fd=dir_fd), dst)
                continue
            if not stat.S_ISREG(mode):
                continue  # sockets, fifos, devices: nothing a site is made of
            size = _copy_file(name, dir_fd, dst, rel / name)
            total, count = total + size, count + 1
            if total > limit or count > MAX_FILES:
                raise BadSource(f"the source is larger than {limit >> 20} MiB or {MAX_FILES} files")
    _links_stay_inside(into)


def _copy_file(name: str, dir_fd: int, dst: Path, shown: Path) -> int:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise BadSource(f"{shown} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise BadSource(f"{shown} changed while it was copied")
        with open(dst, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    os.chmod(dst, stat.S_IMODE(info.st_mode) & 0o755 | 0o644)
    return info.st_size


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
    """Unpack a tar.gz upload: paths stay beneath `into` (no absolute paths, no '..', no links out, no
    devices: tarfile's "data" filter), and its files add up to at most `limit` bytes."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            if len(members) > MAX_FILES or sum(m.size for m in members if m.isfile()) > limit:
                raise BadSource(f"the archive unpacks to more than {limit >> 20} MiB or {MAX_FILES} files")
            tar.extractall(into, filter="data")
    except tarfile.FilterError as exc:
        raise BadSource(f"refused: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BadSource(f"not a readable tar.gz archive: {exc}") from None


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
