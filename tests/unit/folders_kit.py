"""Folders nested without end, as user code can make them, made and removed without recursion."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def nested(root: Path, depth: int) -> Iterator[None]:
    """root/d/d/.../d, `depth` deep, for the block; removed after it, deepest first (a recursive removal would
    meet the same limit the code under test does)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    try:
        yield
    finally:
        for level in range(depth, 0, -1):
            os.rmdir(root.joinpath(*["d"] * level))
