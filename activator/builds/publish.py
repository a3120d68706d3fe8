"""A static site's release: its files published for Caddy's file server, with gzip and zstd copies made once
here (Caddy's `precompressed` serves them), and the switch to it as one atomic symlink swap."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import zstandard

# Types worth compressing (images, fonts and archives are compressed already).
COMPRESSIBLE = frozenset(
    ".html .htm .css .js .mjs .cjs .json .map .svg .txt .xml .md .csv .wasm .ico .webmanifest .ts".split()
)
MIN_SIZE = 256  # smaller files gain nothing worth a second file
ZSTD_LEVEL = 19  # made once per deploy, read at every request: the slow, small end is the right one ...
ZSTD_LEVEL_LARGE = 9  # ... up to 1 MiB; beyond, a level that keeps a deploy quick
MAX_SIZE = 64 << 20  # larger files are served uncompressed (Caddy's encode would compress them per request)


def precompress(root: Path) -> tuple[int, int]:
    """Write FILE.gz and FILE.zst beside each compressible file where they are smaller. Returns (files
    compressed, bytes saved by zstd). Files are made readable by a Caddy that runs as another user. Streamed,
    a file at a time; larger files get a faster zstd level, and files over MAX_SIZE none (served as they are)."""
    done = saved = 0
    for here, _dirs, files in os.walk(root):
        os.chmod(here, 0o755)
        for name in files:
            path = Path(here, name)
            if path.is_symlink():
                continue
            os.chmod(path, 0o644)
            size = path.stat().st_size
            if path.suffix.lower() not in COMPRESSIBLE or not MIN_SIZE <= size <= MAX_SIZE:
                continue
            level = ZSTD_LEVEL if size <= 1 << 20 else ZSTD_LEVEL_LARGE
            gz, zst = path.with_name(path.name + ".gz"), path.with_name(path.name + ".zst")
            with path.open("rb") as src, gzip.GzipFile(gz, "wb", compresslevel=9, mtime=0) as out:
                shutil.copyfileobj(src, out, 1 << 20)
            with path.open("rb") as src, zst.open("wb") as out:
                zstandard.ZstdCompressor(level=level).copy_stream(src, out, size=size)
            for packed in (gz, zst):
                if packed.stat().st_size >= size:
                    packed.unlink()  # no smaller: Caddy serves the file itself
                else:
                    os.chmod(packed, 0o644)
            if zst.exists():
                done, saved = done + 1, saved + size - zst.stat().st_size
    return done, saved


def go_live(site_dir: Path, release: str) -> None:
    """Point site_dir/current at releases/RELEASE: a new symlink renamed over the old one, so that Caddy,
    which follows it at each request, sees the old release or the new one, never neither."""
    link = site_dir / "current"
    tmp = site_dir / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/{release}", tmp)
    os.replace(tmp, link)


def live_release(site_dir: Path) -> str | None:
    try:
        return Path(os.readlink(site_dir / "current")).name
    except OSError:
        return None
