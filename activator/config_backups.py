"""The [backups] table: where restic keeps the backups, and how often each class is backed up and how long kept."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activator.config_values import _dir_value, _path_value, _positive, _Table, _typed, parse_duration


class BackupClass(enum.StrEnum):
    DB = "db"  # dialup's SQLite database (events, releases, editor access), copied online and checked
    SITES = "sites"  # what sites need to come back: published files, workspaces, sources, images
    CONFIG = "config"  # the config file


@dataclass(frozen=True)
class Schedule:
    every: float  # seconds between backups of the class
    keep: float  # seconds a backup of the class is kept (the newest is always kept)


_DEFAULTS = {
    BackupClass.DB: Schedule(6 * 3600.0, 7 * 86400.0),
    BackupClass.SITES: Schedule(86400.0, 30 * 86400.0),
    BackupClass.CONFIG: Schedule(7 * 86400.0, 28 * 86400.0),
}


@dataclass(frozen=True)
class BackupsConfig:
    repository: Path | None = None  # None: no [backups] table, no scheduled backups
    password_file: Path | None = None  # None: state_dir/system/backup.key (made 0600 on first use)
    database: Schedule = _DEFAULTS[BackupClass.DB]
    sites: Schedule = _DEFAULTS[BackupClass.SITES]
    config: Schedule = _DEFAULTS[BackupClass.CONFIG]
    verify_every: float = 86400.0  # `restic check` (with a share of the data read) this often
    verify_data: str = "5%"  # how much of the stored data each check reads back
    restic: str = "/usr/bin/restic"

    @property
    def enabled(self) -> bool:
        return self.repository is not None

    def key_file(self, system_dir: Path) -> Path:
        return self.password_file or system_dir / "backup.key"

    def schedule(self, kind: BackupClass) -> Schedule:
        return {BackupClass.DB: self.database, BackupClass.SITES: self.sites, BackupClass.CONFIG: self.config}[kind]


def _schedule(default: Schedule) -> Any:
    def read(value: object) -> Schedule:
        if not isinstance(value, dict):
            raise TypeError('expected a table like { every = "6h", keep = "7d" }')
        unknown = set(value) - {"every", "keep"}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} (expected every and keep)")
        every = _positive(parse_duration)(value.get("every", default.every))
        keep = _positive(parse_duration)(value.get("keep", default.keep))
        return Schedule(every, keep)

    return read


def _local_folder(value: object) -> str:
    text = _dir_value(value)
    if ":" in text:  # restic's sftp:, s3:, rest: ... would be taken here for a folder named so
        raise ValueError("expected a local folder (restic's other backends, like 'sftp:', are not supported yet)")
    return text


def _share(value: object) -> str:
    text = _typed(str, "a share like '5%'")(value)
    if not text.endswith("%") or not text[:-1].isdigit() or not 0 < int(text[:-1]) <= 100:
        raise ValueError("expected a share like '5%' (1% to 100%)")
    return text


def read_backups(t: _Table, base_dir: Path) -> BackupsConfig:
    """Relative paths are the config file's directory's (as state_dir is)."""
    if not t.data:
        return BackupsConfig()
    d = BackupsConfig()
    repository = t.get("repository", _local_folder)
    password = t.get("password_file", _dir_value, None)
    backups = BackupsConfig(
        repository=Path(os.path.abspath(base_dir / repository)),
        password_file=None if password is None else Path(os.path.abspath(base_dir / password)),
        database=t.get("database", _schedule(d.database), d.database),
        sites=t.get("sites", _schedule(d.sites), d.sites),
        config=t.get("config", _schedule(d.config), d.config),
        verify_every=t.get("verify_every", _positive(parse_duration), d.verify_every),
        verify_data=t.get("verify_data", _share, d.verify_data),
        restic=t.get("restic", _path_value, d.restic),
    )
    t.done()
    return backups
