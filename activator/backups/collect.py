"""What each class of backup holds, gathered into a staging folder (system/backup-staging) beside what is backed
up where it lies. Every snapshot is taken from / with relative paths, so it holds the files at their own paths,
and a manifest (manifest.json, staged) says where each part was: a restore elsewhere puts each in its new place.

- db: dialup's SQLite database, copied online with SQLite's backup API (the activator keeps writing meanwhile)
  and checked with `PRAGMA integrity_check` before it is stored.
- sites: the published releases (user-sites/), the editor's workspaces (dev-workspaces/), Caddy's certificates
  (caddy/), each site's source folder, and the images the sites run (`docker save`: a site's configured image,
  or its live release's). Left out, as rebuilt more cheaply than stored: development containers' installed
  packages (dev-cache/), releases no longer live and their images, the build cache, the node base image.
- config: the config file.
Blocking (file copies, SQLite): call from a thread, except stage_images (a child process)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from activator.config import Config
from activator.config_backups import BackupClass

MANIFEST = "manifest.json"
ROOT = Path("/")  # where restic runs from: the snapshot holds each path at its own place


class CollectFailed(Exception):
    """Something to back up could not be gathered: what, and why."""


@dataclass(frozen=True)
class Manifest:
    kind: str
    server: str
    state_dir: str
    config: str
    staging: str
    sources: dict[str, str] = field(default_factory=dict)  # site -> its source folder
    images: dict[str, str] = field(default_factory=dict)  # image reference -> its saved file (beneath staging)
    created: float = 0.0
    version: int = 1

    def write(self, folder: Path) -> None:
        (folder / MANIFEST).write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))

    @staticmethod
    def read(path: Path) -> Manifest:
        data = orjson.loads(path.read_bytes())
        return Manifest(**data)


def staging_dir(config: Config, kind: BackupClass) -> Path:
    return config.server.system_dir / "backup-staging" / kind.value


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(mode=0o700, parents=True)
    return folder


def copy_database(db: Path, into: Path) -> None:
    """An online, consistent copy (SQLite's backup API), checked before it is stored."""
    if not db.exists():
        raise CollectFailed(f"{db}: no database to back up")
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(into)
    try:
        source.backup(target, pages=1024, sleep=0.005)  # in steps: the activator's writes go on meanwhile
        verdict = target.execute("PRAGMA integrity_check").fetchone()
    finally:
        source.close()
        target.close()
    if verdict is None or verdict[0] != "ok":
        raise CollectFailed(f"{db}: the copy failed its integrity check: {verdict}")


def sources_of(config: Config) -> dict[str, Path]:
    """Each site's source folder, resolved (a source reached through a link is backed up, not the link).
    CollectFailed if one is missing: a backup without it would not bring its site back."""
    found = {}
    for site in config.sites:
        if site.source is not None:
            real = Path(os.path.realpath(site.source))
            if not real.is_dir():
                raise CollectFailed(f"site {site.name}: its source {site.source} is not there")
            found[site.name] = real
    return found


def paths_of(config: Config, kind: BackupClass, staging: Path) -> list[Path]:
    """The absolute paths a snapshot of the class holds: the staging folder, and what exists of the rest."""
    state = config.server
    found: list[Path] = []
    if kind is BackupClass.SITES:
        found += [state.user_sites_dir, state.workspaces_dir, state.state_dir / "caddy"]
        found += list(sources_of(config).values())
    elif kind is BackupClass.CONFIG:
        found.append(config.path)
    return [staging] + [Path(os.path.realpath(p)) for p in found if p.exists()]


def manifest_tag(staging: Path) -> str:
    return f"manifest:{os.path.relpath(staging, '/')}"


def manifest_of(config: Config, kind: BackupClass, staging: Path, images: dict[str, str]) -> Manifest:
    return Manifest(
        kind=kind.value,
        server=config.server.name,
        state_dir=str(config.server.state_dir),
        config=str(config.path),
        staging=str(staging),
        sources={n: str(p) for n, p in sources_of(config).items()} if kind is BackupClass.SITES else {},
        images=images,
        created=time.time(),
    )


def _file_name(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image) + ".tar"


async def stage_images(docker: str, images: list[str], into: Path) -> dict[str, str]:
    """Each image saved to a tar in `into` (docker save: the engine does the work, at its own priority):
    reference -> file name."""
    await asyncio.to_thread(into.mkdir, 0o700, False, True)
    saved: dict[str, str] = {}
    for image in sorted(set(images)):
        target = into / _file_name(image)
        proc = await asyncio.create_subprocess_exec(
            docker, "save", "-o", str(target), image, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, err = await proc.communicate()
        except BaseException:  # cancelled: the export ends with it
            if proc.returncode is None:
                proc.kill()
                await asyncio.shield(proc.wait())
            raise
        if proc.returncode != 0:
            raise CollectFailed(f"docker save {image}: {err.decode(errors='replace').strip()[-500:]}")
        saved[image] = f"images/{target.name}"
    return saved


def relative(paths: list[Path]) -> list[str]:
    """Paths as restic is given them from /: the snapshot's tree holds them at their own places."""
    return [os.path.relpath(p, "/") for p in paths]
