"""`dialup backup`, `dialup backups`, `dialup migrate`: a backup now (with its progress, then verified), what is
stored, and a bundle for a move to another server. They run in this process, beside a running `dialup up` or
not: the backup lock keeps to one backup at a time."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from activator import statedir
from activator.backups.restic import Restic
from activator.backups.service import SITE, TAG, BackupBusy, BackupFailed, Backups, restic_for
from activator.builds.releases import Releases
from activator.config import Config
from activator.config_backups import BackupClass
from activator.core.sizes import PLAN, SIZES, shares
from activator.model import EventKind
from activator.store import Store


class NoBackups(Exception):
    """The config has no [backups] table."""


async def live_images(config: Config, releases: Releases) -> list[str]:
    """The images the sites run: each container site's live release's, else its configured one (development
    containers' and holders' are left out: rebuilt, not stored)."""
    live = await releases.live()
    images = []
    for site in config.container_sites:
        release = live.get(site.name)
        if release is not None and release.kind == "image" and not release.removed:
            images.append(release.artifact)
        elif site.image and not site.develops:
            images.append(site.image)
    return images


@asynccontextmanager
async def opened(config: Config) -> AsyncIterator[tuple[Backups, Store]]:
    if not config.backups.enabled:
        raise NoBackups(f"{config.path}: there is no [backups] table (its repository says where backups go)")
    statedir.prepare(config.server)
    store = Store(config.server.db_path)
    await store.open()
    try:
        releases = Releases(store.db)
        await releases.open()
        yield Backups(lambda: config, restic_for(config), store, lambda: live_images(config, releases)), store
    finally:
        await store.close()


def _progress(kind: str) -> Any:
    began = time.monotonic()

    def show(files: int, total_files: int, done: int, total: int) -> None:
        sys.stderr.write(
            f"\r{kind}: {files}/{total_files} files, {done / 2**20:.1f}/{total / 2**20:.1f} MiB, "
            f"{time.monotonic() - began:.1f} s   "
        )

    return show


def classes(only: str | None, include_db: bool) -> list[BackupClass]:
    if only:
        return [BackupClass(only)]
    return ([BackupClass.DB] if include_db else []) + [BackupClass.SITES, BackupClass.CONFIG]


async def backup(config: Config, kinds: Sequence[BackupClass]) -> bool:
    """Each class backed up, then the repository checked: True only if all of it was done and verified. One
    under way (the schedule's) is waited for."""
    async with opened(config) as (backups, _):
        told = False

        def waiting() -> None:
            nonlocal told
            if not told:
                print("waiting for the backup under way to end", file=sys.stderr)
                told = True

        backups.wait = waiting
        for kind in kinds:
            try:
                summary = await backups.run(kind, "command", _progress(kind.value))
            except (BackupBusy, BackupFailed) as exc:
                print(f"\ndialup: {exc}", file=sys.stderr)
                return False
            print(
                f"\r{kind.value}: snapshot {summary.snapshot[:8]}: {summary.files} files, "
                f"{summary.bytes_processed / 2**20:.1f} MiB read, {summary.bytes_added / 2**20:.2f} MiB added, "
                f"{summary.seconds:.1f} s",
                file=sys.stderr,
            )
        try:
            await backups.verify("command")
        except (BackupBusy, BackupFailed) as exc:
            print(f"dialup: {exc}", file=sys.stderr)
            return False
        print(f"verified: restic check read back {config.backups.verify_data} of the data", file=sys.stderr)
    return True


async def listing(config: Config) -> dict[str, Any]:
    """Each class's snapshots (newest first) with what its backup added; the last verification and failure."""
    async with opened(config) as (backups, store):
        restic: Restic = backups.restic
        await restic.ensure_repository()
        stored = await restic.snapshots(TAG)
        events = await store.events_of(SITE)
    done = {e["detail"].split("snapshot ", 1)[1][:8]: e for e in events if e["kind"] == EventKind.BACKUP_DONE}
    by_class: dict[str, list[dict[str, Any]]] = {c.value: [] for c in BackupClass}
    for s in sorted(stored, key=lambda s: s.time, reverse=True):
        kind = s.tag("class:")
        if kind in by_class:
            row = done.get(s.id[:8])
            by_class[kind].append({
                "id": s.id[:8], "time": s.time, "host": s.host,
                "added": row["detail"].rsplit(", ", 1)[1] if row else None,
                "seconds": round(row["duration_ms"] / 1000, 1) if row and row["duration_ms"] else None,
            })  # fmt: skip
    last = {
        k: next((e for e in reversed(events) if e["kind"] == k), None) for k in ("backup_verified", "backup_failed")
    }
    return {
        "repository": str(config.backups.repository),
        "classes": by_class,
        "last_verified": last["backup_verified"] and last["backup_verified"]["ts"],
        "last_failure": last["backup_failed"]
        and {"time": last["backup_failed"]["ts"], "reason": last["backup_failed"]["detail"]},
    }


def print_listing(listing: dict[str, Any]) -> None:
    print(f"repository: {listing['repository']}")
    for kind, rows in listing["classes"].items():
        print(f"{kind}: {len(rows)} snapshots")
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"]))
            print(f"  {row['id']}  {when}  {row['added'] or '-'}  {row['seconds'] or '-'} s")
    verified = listing["last_verified"]
    print(f"last verified: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(verified)) if verified else 'never'}")
    if listing["last_failure"]:
        failure = listing["last_failure"]
        print(
            f"last failure: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(failure['time']))}: {failure['reason']}"
        )


async def migrate(config: Config, size_name: str, bundle: Path) -> bool:
    """A verified backup of every class now, and a bundle saying how to bring it up on a server of that size."""
    if not await backup(config, list(BackupClass)):
        return False
    async with opened(config) as (backups, _):
        stored = await backups.restic.snapshots(TAG)
    mine = sorted((s for s in stored if s.host == config.server.name), key=lambda s: s.time)
    newest = {kind: next(s.id for s in reversed(mine) if s.tag("class:") == kind.value) for kind in BackupClass}
    size, now = SIZES[size_name], shares(PLAN)
    target = shares(size)
    rows = [
        ("memory budget of the sites", f"{config.budget.memory >> 20} MiB", f"{target.budget >> 20} MiB",
         f"{now.budget >> 20} MiB"),
        ("builds: memory", f"{config.builds.memory >> 20} MiB", f"{target.build_memory >> 20} MiB",
         f"{now.build_memory >> 20} MiB"),
        ("builds: cores", f"{config.builds.cpus:g}", f"{target.build_cpus:g}", f"{now.build_cpus:g}"),
        ("builds: at once", str(config.builds.parallel), str(target.build_parallel), str(now.build_parallel)),
    ]  # fmt: skip
    b = config.backups
    key = b.key_file(config.server.system_dir)
    table = [f"{'setting':<28} {'this server':>12} {size_name + ' server':>14} {'(plan, 4 GB)':>13}"]
    table += [f"{a:<28} {b_:>12} {c:>14} {d:>13}" for a, b_, c, d in rows]
    steps = [
        f"1. Copy the repository {b.repository} and the password file {key} to the new server (the same paths,",
        f"   or change {bundle / 'restore.toml'} to where they are there), with this bundle.",
        "2. On the new server: get dialup (scripts/setup.sh), then restore (it writes the config for that size):",
        f"   dialup restore {newest[BackupClass.SITES][:8]} --target-dir /var/lib/dialup --size {size_name} "
        f"-c {bundle / 'restore.toml'}",
        "3. Bring it up: dialup up -c /var/lib/dialup/dialup.toml (check its listen addresses first), then point",
        "   the sites' DNS names at the new server.",
        "4. Here, once the new server answers: dialup down -c " + str(config.path),
    ]
    text = "\n".join(["Migration to a " + size_name + " server", "", *table, "", *steps]) + "\n"
    files = {
        # Its own state folder (the default, /var/lib/dialup, is where the steps restore to).
        "restore.toml": f'[server]\nstate_dir = "restore-state"\n\n[backups]\nrepository = "{b.repository}"\n'
        f'password_file = "{key}"\n',
        "snapshots.json": json.dumps({k.value: v for k, v in newest.items()}, indent=2) + "\n",
        "STEPS.txt": text,
    }
    await asyncio.to_thread(_write_bundle, bundle, files)
    print(text)
    return True


def _write_bundle(bundle: Path, files: dict[str, str]) -> None:
    bundle.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (bundle / name).write_text(text)
