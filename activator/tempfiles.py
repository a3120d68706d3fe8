"""Freeing storage: old files in temp/, and images the project made that nothing uses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_MAX_AGE = 24 * 3600.0  # temp/ files older than a day go
BUILDS = "builds"  # temp/builds: the deploys under way (each removes its own scratch when it ends)


def clean_temp(temp_dir: Path, now: float, max_age: float = TEMP_MAX_AGE) -> tuple[int, int]:
    """Delete regular files under temp_dir last modified more than max_age ago. Returns (files, bytes).
    Blocking (file system walks): call it from a thread."""
    files = freed = 0
    if not temp_dir.is_dir():
        return 0, 0
    for root, dirs, names in os.walk(temp_dir):
        if Path(root) == temp_dir:
            dirs[:] = [d for d in dirs if d != BUILDS]  # a build's files keep the mtimes of its source
        for name in names:
            path = Path(root) / name
            try:
                st = path.lstat()
                if path.is_symlink() or not path.is_file() or now - st.st_mtime <= max_age:
                    continue
                path.unlink()
            except OSError as exc:
                log.warning("could not delete %s: %s", path, exc)
                continue
            files, freed = files + 1, freed + st.st_size
    return files, freed
