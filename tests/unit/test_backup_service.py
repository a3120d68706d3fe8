"""Backups through a fake restic (our own interface's fake) and real files: retention after each backup, one
backup at a time, the storage response's trim; restic itself as a child process: its exit codes, its priority,
the password file."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from activator.backups.restic import BackupSummary, Restic, ResticFailed, Stored, ensure_password_file
from activator.backups.service import BackupBusy, Backups
from activator.config import load_config
from activator.config_backups import BackupClass

DAY = 86400.0
NOW = 1_800_000_000.0


@dataclass
class FakeRestic:
    stored: list[Stored] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def ensure_repository(self) -> None:
        self.calls.append(("ensure", None))

    async def backup(self, paths: list[str], tags: list[str], host: str, cwd: Path, progress: Any) -> BackupSummary:
        self.calls.append(("backup", sorted(paths)))
        snapshot = Stored(f"new{len(self.stored)}", NOW, tuple(tags), host)
        self.stored.append(snapshot)
        return BackupSummary(snapshot.id, 1, 10, 5, 0.1)

    async def snapshots(self, tag: str | None = None) -> list[Stored]:
        return [s for s in self.stored if tag is None or tag in s.tags]

    async def forget(self, ids: list[str], prune: bool = True) -> None:
        self.calls.append(("forget", sorted(ids)))
        self.stored = [s for s in self.stored if s.id not in ids]

    async def run(self, args: list[str], **_: Any) -> bytes:
        self.calls.append(("run", args))
        return b""


@dataclass
class Events:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    async def record(
        self, site: str, kind: str, cause: str, duration_ms: float | None = None, detail: str = ""
    ) -> None:
        self.rows.append((kind, cause, detail))


def setup(tmp_path: Path) -> tuple[Backups, FakeRestic, Events]:
    (tmp_path / "state" / "system").mkdir(parents=True)
    path = tmp_path / "dialup.toml"
    path.write_text(
        '[server]\nstate_dir = "state"\nname = "box"\n[backups]\nrepository = "repo"\n'
        'config = { every = "7d", keep = "28d" }\n'
    )
    config = load_config(path)
    restic, events = FakeRestic(), Events()

    async def no_images() -> list[str]:
        return []

    return Backups(lambda: config, restic, events, no_images, wall=lambda: NOW), restic, events  # type: ignore[arg-type]


async def test_after_a_backup_what_is_older_than_keep_is_forgotten_but_never_the_newest_nor_others(
    tmp_path: Path,
) -> None:
    backups, restic, events = setup(tmp_path)
    tags = ("dialup", "class:config")
    restic.stored = [
        Stored("old", NOW - 40 * DAY, tags, "box"),
        Stored("kept", NOW - 20 * DAY, tags, "box"),
        Stored("other-class", NOW - 40 * DAY, ("dialup", "class:db"), "box"),
        Stored("other-server", NOW - 40 * DAY, tags, "another-box"),  # a restored copy's: not ours to forget
    ]
    summary = await backups.run(BackupClass.CONFIG, "command")
    assert ("forget", ["old"]) in restic.calls
    assert {s.id for s in restic.stored} == {"kept", "other-class", "other-server", summary.snapshot}
    assert [kind for kind, _, _ in events.rows] == ["backup_started", "backup_done"]
    backed_up = next(arg for call, arg in restic.calls if call == "backup")
    assert "dialup.toml" in " ".join(backed_up)  # the config file, from / (relative paths)


async def test_a_backup_while_another_runs_is_skipped_and_says_so(tmp_path: Path) -> None:
    backups, restic, events = setup(tmp_path)
    fd = os.open(tmp_path / "state" / "system" / "backup.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's backup (`dialup backup`, or the schedule)
    try:
        with pytest.raises(BackupBusy):
            await backups.run(BackupClass.DB, "schedule")
    finally:
        os.close(fd)
    assert [kind for kind, _, _ in events.rows] == ["backup_skipped"] and not restic.calls


async def test_the_storage_response_applies_every_classs_retention_and_prunes(tmp_path: Path) -> None:
    backups, restic, _ = setup(tmp_path)
    restic.stored = [
        Stored("db-old", NOW - 8 * DAY, ("dialup", "class:db"), "box"),
        Stored("db-new", NOW - DAY, ("dialup", "class:db"), "box"),
    ]
    assert await backups.trim() == "backups: retention applied, space pruned"
    assert ("forget", ["db-old"]) in restic.calls and ("run", ["prune"]) in restic.calls


def fake_restic(tmp_path: Path, code: int) -> Restic:
    script = tmp_path / "restic"
    script.write_text(f"#!/bin/sh\necho 'what restic said' >&2\nexit {code}\n")
    script.chmod(0o755)
    return Restic(str(script), tmp_path / "repo", tmp_path / "key", tmp_path / "cache")


@pytest.mark.parametrize("code", [1, 3, 12])
async def test_every_exit_code_of_restic_but_0_is_a_failure(tmp_path: Path, code: int) -> None:
    # 3: "some source files could not be read": the snapshot was made, incomplete. A failure all the same.
    with pytest.raises(ResticFailed, match=f"restic backup exited {code}: what restic said"):
        await fake_restic(tmp_path, code).run(["backup", "/x"])
    assert await fake_restic(tmp_path, 0).run(["snapshots"]) == b""


def test_restic_runs_at_the_lowest_cpu_and_io_priority(tmp_path: Path) -> None:
    argv = fake_restic(tmp_path, 0)._argv(["backup"])
    assert argv[:3] == ["nice", "-n", "19"] and argv[3:6] == ["ionice", "-c", "3"]


def test_the_password_file_is_made_0600_once_and_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / "system" / "backup.key"
    ensure_password_file(key)
    first = key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(first.strip()) >= 40
    ensure_password_file(key)
    assert key.read_text() == first


async def test_a_command_waits_for_the_backup_under_way_then_runs(tmp_path: Path) -> None:
    backups, _, events = setup(tmp_path)
    fd = os.open(tmp_path / "state" / "system" / "backup.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the schedule's backup, under way
    told = asyncio.Event()
    backups.wait = told.set
    run = asyncio.ensure_future(backups.run(BackupClass.CONFIG, "command"))
    await asyncio.wait_for(told.wait(), 5)
    assert not run.done()
    os.close(fd)  # it ends
    await asyncio.wait_for(run, 5)
    assert [kind for kind, _, _ in events.rows] == ["backup_started", "backup_done"]


async def test_a_listing_longer_than_a_pipe_line_is_read_whole(tmp_path: Path) -> None:
    # `restic snapshots --json` is one line, as long as the repository's history (past asyncio's 64 KiB limit).
    script = tmp_path / "restic"
    script.write_text("#!/bin/sh\nhead -c 300000 /dev/zero\n")
    script.chmod(0o755)
    out = await Restic(str(script), tmp_path / "repo", tmp_path / "key", tmp_path / "cache").run(["snapshots"])
    assert out == b"\0" * 300_000


async def test_a_repository_folder_that_is_there_but_not_readable_is_never_made_anew(tmp_path: Path) -> None:
    # An unmounted backup disk's folder, or a lost password file: a failure, never a new repository over it.
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "config").write_text("not ours")
    restic = fake_restic(tmp_path, 0)
    with pytest.raises(ResticFailed, match="no password file"):
        await restic.ensure_repository()
    assert not (tmp_path / "key").exists()


def test_a_manifest_is_read_where_its_tag_says_and_checked(tmp_path: Path) -> None:
    from activator.backups.collect import Manifest
    from activator.backups.restore import RestoreFailed, _manifest

    staging = tmp_path / "var" / "lib" / "dialup" / "system" / "backup-staging" / "sites"
    staging.mkdir(parents=True)
    good = Manifest("sites", "box", "/var/lib/dialup", "/etc/dialup.toml", "/x", {"blog": "/srv/blog"})
    good.write(staging)
    tag = ("dialup", "class:sites", "manifest:var/lib/dialup/system/backup-staging/sites")
    assert _manifest(tmp_path, Stored("s1", NOW, tag, "box"))[0] == good
    # A site's own files can hold anything, a manifest too: it is never searched for.
    with pytest.raises(RestoreFailed, match="has no manifest"):
        _manifest(tmp_path, Stored("s1", NOW, ("dialup", "class:sites"), "box"))
    Manifest("sites", "box", "/s", "/c", "/x", {"../../etc": "/srv/x"}).write(staging)
    with pytest.raises(RestoreFailed, match=re.escape("names '../../etc'")):
        _manifest(tmp_path, Stored("s1", NOW, tag, "box"))
