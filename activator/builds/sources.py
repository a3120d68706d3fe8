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
    inside the source; never a file outside it, never more than `limit` bytes or MAX_FILES files."""
    if not source.is_dir():
        raise BadSource(f"{source} is not a folder")
    root = Path(os.path.realpath(source))
    total = count = 0
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED)
        rel = Path(here).relative_to(root)
        (into / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(here, d))]:
            src, dst = Path(here, name), into / rel / name
            info = src.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(src)
                inside = Path(os.path.normpath(Path(here, target)))
                if os.path.isabs(target) or not (inside == root or root in inside.parents):
                    raise BadSource(f"{rel / name} is a symlink to {target}, outside the source")
                os.symlink(target, dst)
                continue
            if not stat.S_ISREG(info.st_mode):
                continue  # sockets, fifos, devices: nothing a site is made of
            total, count = total + info.st_size, count + 1
            if total > limit or count > MAX_FILES:
                raise BadSource(f"the source is larger than {limit >> 20} MiB or {MAX_FILES} files")
            shutil.copy2(src, dst, follow_symlinks=False)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(here, d))]


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
