"""`dialup restore`: a deployment brought back from its backups into a new folder (on this machine or a new
one): the sites snapshot (the one named, else the newest) and the newest database and config snapshots of the
same server, each put in its new place (the state directory, the sources, the config file rewritten to point at
them), the images loaded, and what was restored checked. Each step is reported with its time."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activator.backups.collect import MANIFEST, Manifest
from activator.backups.restic import Restic, Stored
from activator.backups.service import TAG
from activator.config_backups import BackupClass
from activator.core.sizes import Size, toml_tables


class RestoreFailed(Exception):
    pass


def pick(stored: list[Stored], snapshot: str | None) -> dict[BackupClass, Stored]:
    """The sites snapshot (by id or id prefix, else the newest), and the newest of each other class of its
    server taken no later than a day after it."""
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
    for kind in (BackupClass.DB, BackupClass.CONFIG):
        same = [s for s in of[kind] if s.host == sites.host and s.time <= sites.time + 86400]
        if same:
            picked[kind] = same[-1]
    return picked


def _manifest(folder: Path, kind: BackupClass) -> tuple[Manifest, Path]:
    found = list(folder.glob(f"**/backup-staging/{kind.value}/{MANIFEST}"))
    if len(found) != 1:
        raise RestoreFailed(f"the {kind.value} snapshot has no manifest (not made by dialup?)")
    return Manifest.read(found[0]), found[0].parent


def _inside(folder: Path, absolute: str) -> Path:
    return folder / os.path.relpath(absolute, "/")


def _move(src: Path, dst: Path) -> None:
    if src.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)


def place_sites(folder: Path, target: Path) -> Manifest:
    manifest, _ = _manifest(folder, BackupClass.SITES)
    state = _inside(folder, manifest.state_dir)
    for part in ("user-sites", "dev-workspaces", "caddy"):
        _move(state / part, target / "state" / part)
    for site, source in manifest.sources.items():
        _move(_inside(folder, source), target / "sources" / site)
    return manifest


def place_database(folder: Path, target: Path, old_state: str) -> None:
    manifest, staging = _manifest(folder, BackupClass.DB)
    system = target / "state" / "system"
    system.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = system / "dialup.db"
    os.rename(staging / "dialup.db", db)
    new_state = str(target / "state")
    with sqlite3.connect(db) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()
        if verdict is None or verdict[0] != "ok":
            raise RestoreFailed(f"the restored database failed its integrity check: {verdict}")
        # A published release is a folder of the state directory: it has moved with it.
        conn.execute(
            "UPDATE releases SET artifact = ? || substr(artifact, ?) WHERE kind = 'files' AND artifact LIKE ?",
            (new_state, len(old_state) + 1, old_state + "/%"),
        )
    if manifest.state_dir != old_state:
        raise RestoreFailed("the database and sites snapshots are of different state directories")


def place_config(
    folder: Path, target: Path, sources: dict[str, str], name: str | None, size: Size | None = None
) -> Path:
    manifest, _ = _manifest(folder, BackupClass.CONFIG)
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
    path.write_text(f"# Restored by dialup restore from {manifest.config} ({time.ctime()})\n" + dumps(data))
    return path


async def load_images(docker: str, folder: Path, manifest: Manifest) -> list[str]:
    staging = _inside(folder, manifest.staging)
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
    """Everything restored into `target` (which must be empty or new). Returns the config file written, if the
    backups had one."""
    if await asyncio.to_thread(lambda: target.exists() and any(target.iterdir())):
        raise RestoreFailed(f"{target} is not empty: restore into a new folder")
    began = time.monotonic()

    def step(what: str) -> None:
        say(f"{what} ({time.monotonic() - began:.1f} s)")

    picked = pick(await restic.snapshots(TAG), snapshot)
    step("chose " + ", ".join(f"{k.value} {s.id[:8]} ({time.ctime(s.time)})" for k, s in picked.items()))
    scratch = target / ".restoring"
    try:
        for kind, stored in picked.items():
            await restic.restore(stored.id, scratch / kind.value)
            step(f"restored the {kind.value} snapshot")
        manifest = await asyncio.to_thread(place_sites, scratch / "sites", target)
        step(f"placed the state directory and {len(manifest.sources)} sources")
        if BackupClass.DB in picked:
            await asyncio.to_thread(place_database, scratch / "db", target, manifest.state_dir)
            step("placed the database (integrity checked, release folders moved with it)")
        config = None
        if BackupClass.CONFIG in picked:
            config = await asyncio.to_thread(place_config, scratch / "config", target, manifest.sources, name, size)
            step(f"wrote {config}")
        loaded = await load_images(docker, scratch / "sites", manifest)
        step(f"loaded {len(loaded)} images")
        if BackupClass.DB in picked:
            live = await check_releases(docker, target)
            step(f"checked: the {live} live releases are all there")
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    return config


async def check_releases(docker: str, target: Path) -> int:
    """Every live release is there: its folder (a static site's), or its image. Raises RestoreFailed."""

    def live() -> list[tuple[str, str, str]]:
        with sqlite3.connect(target / "state" / "system" / "dialup.db") as conn:
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


# -- a TOML writer for what tomllib read from a dialup config ----------------------------------------------------


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _key(key: str) -> str:
    return key if key.replace("-", "").replace("_", "").isalnum() else _value(key)


def dumps(data: dict[str, Any]) -> str:
    """Top-level keys, then each table, then each array of tables; tables within tables written inline."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict | list) or (
        (isinstance(v, list) and not all(isinstance(i, dict) for i in v)) or v == [])]  # fmt: skip
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {_value(b)}" for a, b in v.items()]
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(i, dict) for i in v):
            for item in v:
                lines += ["", f"[[{_key(k)}]]"] + [f"{_key(a)} = {_value(b)}" for a, b in item.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
