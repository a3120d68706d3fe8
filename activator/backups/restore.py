"""`dialup restore`: a deployment brought back from its backups into a new folder (on this machine or a new
one): the sites snapshot (the one named, else the newest) and the newest database and config snapshots of the
same server, each put in its new place (the state directory, the sources, the config file rewritten to point at
them), the images loaded, and what was restored checked. Each step is reported with its time."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from activator.backups.collect import MANIFEST, Manifest
from activator.backups.restic import Restic, Stored
from activator.backups.service import TAG
from activator.config import Config
from activator.config_backups import BackupClass
from activator.config_values import _NAME
from activator.core.sizes import Size, toml_tables
from activator.tomlwrite import dumps

_IMAGE_FILE = re.compile(r"^images/[A-Za-z0-9_.-]+\.tar$")


class RestoreFailed(Exception):
    pass


def pick(stored: list[Stored], snapshot: str | None) -> dict[BackupClass, Stored]:
    """The sites snapshot (by id or id prefix, else the newest), and the newest config snapshot of its server
    taken no later than a day after it."""
    of = {c: sorted((s for s in stored if s.tag("class:") == c.value), key=lambda s: s.time) for c in BackupClass}
    if snapshot:
        chosen = [s for s in of[BackupClass.SITES] if s.id.startswith(snapshot)]
        if len(chosen) != 1:
            raise RestoreFailed(f"{snapshot}: {'no' if not chosen else 'more than one'} sites snapshot with that id")
        sites = chosen[0]
    elif of[BackupClass.SITES]:
        sites = of[BackupClass.SITES][-1]
    else:
        raise RestoreFailed("the repository has no sites snapshot")
    picked = {BackupClass.SITES: sites}
    for kind in (BackupClass.CONFIG,):  # (the database: the copy the sites snapshot holds, which matches its files)
        same = [s for s in of[kind] if s.host == sites.host and s.time <= sites.time + 86400]
        if same:
            picked[kind] = same[-1]
    return picked


def _manifest(folder: Path, stored: Stored) -> tuple[Manifest, Path]:
    """The snapshot's manifest, where its tag says (never searched for: the site's own files are in it too)."""
    rel = stored.tag("manifest:")
    if rel is None or ".." in Path(rel).parts or rel.startswith("/"):
        raise RestoreFailed(f"snapshot {stored.id[:8]} has no manifest (not made by dialup?)")
    staging = folder / rel
    try:
        manifest = Manifest.read(staging / MANIFEST)
    except (OSError, ValueError, TypeError) as exc:
        raise RestoreFailed(f"snapshot {stored.id[:8]}: its manifest cannot be read: {exc}") from None
    bad = [n for n in manifest.sources if not _NAME.match(n)]
    bad += [f for f in manifest.images.values() if not _IMAGE_FILE.match(f)]
    if bad:
        raise RestoreFailed(f"snapshot {stored.id[:8]}: its manifest names {bad[0]!r}")
    return manifest, staging


def _inside(folder: Path, absolute: str) -> Path:
    return folder / os.path.relpath(absolute, "/")


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)


def place_sites(folder: Path, manifest: Manifest, target: Path) -> None:
    state = _inside(folder, manifest.state_dir)
    for part in ("user-sites", "dev-workspaces", "caddy"):
        _move(state / part, target / "state" / part)
    for site, source in manifest.sources.items():
        _move(_inside(folder, source), target / "sources" / site)


def place_database(staging: Path, build: Path, old_state: str, new_state: Path) -> None:
    """The database the sites snapshot holds, checked, its release folders moved with the state directory."""
    system = build / "state" / "system"
    system.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = system / "dialup.db"
    os.rename(staging / "dialup.db", db)
    with sqlite3.connect(db) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()
        if verdict is None or verdict[0] != "ok":
            raise RestoreFailed(f"the restored database failed its integrity check: {verdict}")
        conn.execute(
            "UPDATE releases SET artifact = ? || substr(artifact, ?) WHERE kind = 'files' AND artifact LIKE ?",
            (str(new_state), len(old_state) + 1, old_state + "/%"),
        )


def place_config(
    folder: Path, stored: Stored, target: Path, sources: dict[str, str], name: str | None, size: Size | None = None
) -> Path:
    manifest, _ = _manifest(folder, stored)
    data = tomllib.loads(_inside(folder, manifest.config).read_text())
    server = data.setdefault("server", {})
    server["state_dir"] = "state"  # relative: the config file's folder's
    if name:
        server["name"] = name
    for site in data.get("sites", []):
        if site.get("name") in sources:
            site["source"] = f"sources/{site['name']}"
    if sources:
        data.setdefault("builds", {})["source_roots"] = ["sources"]
    if size is not None:  # another server: the budget and the builds' share as the plan gives them for its size
        for table, values in toml_tables(size).items():
            data.setdefault(table, {}).update(values)
    path = target / "dialup.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # (it may hold secrets: sites' env)
    with os.fdopen(fd, "w") as f:
        f.write(f"# Restored by dialup restore from {manifest.config} ({time.ctime()})\n" + dumps(data))
    return path


async def load_images(docker: str, staging: Path, manifest: Manifest) -> list[str]:
    loaded = []
    for image, file in manifest.images.items():
        proc = await asyncio.create_subprocess_exec(
            docker, "load", "-i", str(staging / file),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RestoreFailed(f"docker load {image}: {err.decode(errors='replace').strip()[-500:]}")
        loaded.append(image)
    return loaded


async def restore(
    restic: Restic,
    docker: str,
    target: Path,
    snapshot: str | None,
    name: str | None,
    say: Callable[[str], None],
    size: Size | None = None,
) -> Path | None:
    """Everything restored into `target` (which must be empty or new): made beside it (TARGET.partial) and
    renamed into place once whole, so a restore cut short leaves no half-restored target. Returns the config
    file written, if the backups had one."""
    if await asyncio.to_thread(lambda: target.exists() and any(target.iterdir())):
        raise RestoreFailed(f"{target} is not empty: restore into a new folder")
    step = _stepper(say)
    picked = pick(await restic.snapshots(TAG), snapshot)
    step("chose " + ", ".join(f"{k.value} {s.id[:8]} ({time.ctime(s.time)})" for k, s in picked.items()))
    build = target.with_name(target.name + ".partial")
    try:
        _, config = await _rebuild(restic, docker, build, picked, target / "state", name, size, step)
        await asyncio.to_thread(_into_place, build, target)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, build, True)
        raise
    live = await check_releases(docker, target / "state" / "system" / "dialup.db")
    step(f"checked: the {live} live releases are all there")
    return None if config is None else target / config.name


async def restore_in_place(
    restic: Restic, docker: str, config: Config, snapshot: str | None, say: Callable[[str], None]
) -> Path:
    """The deployment's own state directory and sources replaced by the backup's (its `dialup up` stopped first,
    by the caller); what they held is kept beside them as *.before-restore-STAMP. The config file stays as it
    is. Returns the folder the old state directory was moved to."""
    state = config.server.state_dir
    step = _stepper(say)
    picked = {BackupClass.SITES: pick(await restic.snapshots(TAG), snapshot)[BackupClass.SITES]}
    step(f"chose sites {picked[BackupClass.SITES].id[:8]} ({time.ctime(picked[BackupClass.SITES].time)})")
    build = state.with_name(state.name + ".restoring")
    try:
        manifest, _ = await _rebuild(restic, docker, build, picked, state, None, None, step)
        if Path(manifest.state_dir) != state:
            raise RestoreFailed(
                f"the snapshot is of {manifest.state_dir}, not {state}: restore it into a new folder (--target-dir)"
            )
        aside = await asyncio.to_thread(_swap_in, build, manifest, config, time.strftime("%Y%m%d-%H%M%S"))
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, build, True)
        raise
    step(f"in place: the state directory and {len(manifest.sources)} sources replaced (the old ones kept beside)")
    live = await check_releases(docker, state / "system" / "dialup.db")
    step(f"checked: the {live} live releases are all there")
    return aside


def _stepper(say: Callable[[str], None]) -> Callable[[str], None]:
    began = time.monotonic()

    def step(what: str) -> None:
        say(f"{what} ({time.monotonic() - began:.1f} s)")

    return step


async def _rebuild(
    restic: Restic,
    docker: str,
    build: Path,
    picked: dict[BackupClass, Stored],
    new_state: Path,
    name: str | None,
    size: Size | None,
    step: Callable[[str], None],
) -> tuple[Manifest, Path | None]:
    """The picked snapshots laid out in `build` (state/, sources/SITE, dialup.toml), their images loaded."""
    await asyncio.to_thread(shutil.rmtree, build, True)
    scratch = build / ".restoring"
    for kind, stored in picked.items():
        await restic.restore(stored.id, scratch / kind.value)
        step(f"restored the {kind.value} snapshot")
    manifest, staging = await asyncio.to_thread(_manifest, scratch / "sites", picked[BackupClass.SITES])
    await asyncio.to_thread(place_sites, scratch / "sites", manifest, build)
    step(f"placed the state directory and {len(manifest.sources)} sources")
    await asyncio.to_thread(place_database, staging, build, manifest.state_dir, new_state)
    step("placed the database (integrity checked, release folders moved with it)")
    config = None
    if BackupClass.CONFIG in picked:
        config = await asyncio.to_thread(
            place_config, scratch / "config", picked[BackupClass.CONFIG], build, manifest.sources, name, size
        )
        step("wrote the config")
    loaded = await load_images(docker, staging, manifest)
    step(f"loaded {len(loaded)} images")
    await asyncio.to_thread(shutil.rmtree, scratch)
    return manifest, config


def _swap_in(build: Path, manifest: Manifest, config: Config, stamp: str) -> Path:
    state = config.server.state_dir
    aside = state.with_name(f"{state.name}.before-restore-{stamp}")
    if state.exists():
        os.rename(state, aside)
    os.rename(build / "state", state)
    # The backups' own password file, when it lives in the state directory (the default): carried over.
    key = config.backups.key_file(config.server.system_dir)
    if key.is_relative_to(state) and (old_key := aside / key.relative_to(state)).exists():
        key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(old_key, key)
    for site, source in manifest.sources.items():
        dst = Path(source)
        if dst.exists() or dst.is_symlink():
            os.rename(dst, dst.with_name(f"{dst.name}.before-restore-{stamp}"))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(build / "sources" / site, dst)  # (perhaps to another file system)
    shutil.rmtree(build)
    return aside


def _into_place(build: Path, target: Path) -> None:
    if target.exists():
        target.rmdir()  # (empty: checked first)
    os.rename(build, target)


async def check_releases(docker: str, db: Path) -> int:
    """Every live release is there: its folder (a static site's), or its image. Raises RestoreFailed."""

    def live() -> list[tuple[str, str, str]]:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT site, kind, artifact FROM releases WHERE live = 1").fetchall()

    missing = []
    rows = await asyncio.to_thread(live)
    for site, kind, artifact in rows:
        if kind == "files":
            if not await asyncio.to_thread(Path(artifact).is_dir):
                missing.append(f"{site}: {artifact}")
            continue
        proc = await asyncio.create_subprocess_exec(
            docker, "image", "inspect", artifact, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        if await proc.wait() != 0:
            missing.append(f"{site}: image {artifact}")
    if missing:
        raise RestoreFailed("live releases missing after the restore: " + "; ".join(missing))
    return len(rows)
