"""A static site's release: its files published for Caddy's file server, with gzip and zstd copies made once
here (Caddy's `precompressed` serves them), and the switch to it as one atomic symlink swap."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import zstandard

# Types worth compressing (images, fonts and archives are compressed already).
COMPRESSIBLE = frozenset(
    ".html .htm .css .js .mjs .cjs .json .map .svg .txt .xml .md .csv .wasm .ico .webmanifest .ts".split()
)
MIN_SIZE = 256  # smaller files gain nothing worth a second file
ZSTD_LEVEL = 19  # made once per deploy, read at every request: the slow, small end is the right one


def precompress(root: Path) -> tuple[int, int]:
    """Write FILE.gz and FILE.zst beside each compressible file where they are smaller. Returns (files
    compressed, bytes saved by zstd). Files are made readable by a Caddy that runs as another user."""
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    done = saved = 0
    for here, _dirs, files in os.walk(root):
        os.chmod(here, 0o755)
        for name in files:
            path = Path(here, name)
            if path.is_symlink():
                continue
            os.chmod(path, 0o644)
            if path.suffix.lower() not in COMPRESSIBLE or path.stat().st_size < MIN_SIZE:
                continue
            data = path.read_bytes()
            for suffix, packed in (
                (".gz", gzip.compress(data, compresslevel=9, mtime=0)),
                (".zst", compressor.compress(data)),
            ):
                if len(packed) < len(data):
                    out = path.with_name(path.name + suffix)
                    out.write_bytes(packed)
                    os.chmod(out, 0o644)
                    if suffix == ".zst":
                        done, saved = done + 1, saved + len(data) - len(packed)
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
