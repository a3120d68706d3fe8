"""restic, run as a child process at the lowest CPU and I/O priority: the repository made on first use (with a
password file made 0600), backups with their progress, snapshots, forget and prune, check, restore. Every exit
code but 0 is a failure (restic's 3, "some files could not be read", too: a backup that left something out is
not a backup)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("activator.backups")
TAIL = 2000  # characters of restic's stderr kept for the reason of a failure


class ResticFailed(Exception):
    """restic exited with a code other than 0: the command, the code and the end of what it said."""

    def __init__(self, command: str, code: int | None, said: str) -> None:
        self.command, self.code, self.said = command, code, said
        super().__init__(f"restic {command} exited {code}: {said.strip()[-TAIL:] or '(nothing said)'}")


@dataclass(frozen=True)
class Stored:
    """A snapshot as restic lists it."""

    id: str
    time: float  # unix seconds
    tags: tuple[str, ...]
    host: str

    def tag(self, prefix: str) -> str | None:
        return next((t.removeprefix(prefix) for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class BackupSummary:
    snapshot: str
    files: int
    bytes_processed: int
    bytes_added: int  # new data after deduplication and compression
    seconds: float


# (files done, files total, bytes done, bytes total): restic's status lines, a few times a second
Progress = Callable[[int, int, int, int], None]


def ensure_password_file(path: Path) -> None:
    """A random password, made 0600 by whoever makes it first (O_EXCL: never overwritten)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")


class Restic:
    def __init__(self, binary: str, repository: Path, password_file: Path, cache_dir: Path) -> None:
        self.binary, self.repository, self.password_file, self.cache_dir = binary, repository, password_file, cache_dir

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.cache_dir),
            "RESTIC_REPOSITORY": str(self.repository),
            "RESTIC_PASSWORD_FILE": str(self.password_file),
            "RESTIC_CACHE_DIR": str(self.cache_dir),
        }

    def _argv(self, args: Sequence[str]) -> list[str]:
        # The lowest priorities there are: a backup waits for the sites, never the other way round.
        low = ["nice", "-n", "19"] + (["ionice", "-c", "3"] if shutil.which("ionice") else [])
        return [*low, self.binary, *args]

    async def run(
        self, args: Sequence[str], *, cwd: Path | None = None, lines: Callable[[bytes], None] | None = None
    ) -> bytes:
        """restic with `args`: its stdout (or each line of it given to `lines`), or ResticFailed."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv(args), cwd=cwd, env=self._env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        err = asyncio.ensure_future(proc.stderr.read())
        out = bytearray()
        try:
            async for line in proc.stdout:
                if lines is not None:
                    lines(line)
                else:
                    out += line
            code = await proc.wait()
        except BaseException:  # cancelled (dialup stopping): restic ends too, its repository stays usable
            if proc.returncode is None:
                proc.terminate()
                await asyncio.shield(proc.wait())
            raise
        said = (await err).decode(errors="replace")
        if code != 0:
            raise ResticFailed(args[0], code, said)
        return bytes(out)

    async def ensure_repository(self) -> None:
        """The repository, made if there is none (compressed: repository format 2)."""
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_password_file(self.password_file)
        try:
            await self.run(["cat", "config"])
        except ResticFailed:
            self.repository.mkdir(mode=0o700, parents=True, exist_ok=True)
            await self.run(["init", "--repository-version", "2"])
        await self.run(["unlock"])  # locks left by a restic killed midway (ours only run one at a time)

    async def backup(
        self, paths: Sequence[str], tags: Sequence[str], host: str, cwd: Path, progress: Progress | None = None
    ) -> BackupSummary:
        summary: dict[str, Any] = {}

        def line(raw: bytes) -> None:
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return
            kind = message.get("message_type")
            if kind == "status" and progress is not None:
                progress(
                    int(message.get("files_done", 0)), int(message.get("total_files", 0)),
                    int(message.get("bytes_done", 0)), int(message.get("total_bytes", 0)),
                )  # fmt: skip
            elif kind == "summary":
                summary.update(message)

        args = ["backup", "--json", "--host", host, "--exclude-caches"]
        for tag in tags:
            args += ["--tag", tag]
        await self.run([*args, "--", *paths], cwd=cwd, lines=line)
        return BackupSummary(
            snapshot=str(summary.get("snapshot_id", "")),
            files=int(summary.get("total_files_processed", 0)),
            bytes_processed=int(summary.get("total_bytes_processed", 0)),
            bytes_added=int(summary.get("data_added", 0)),
            seconds=float(summary.get("total_duration", 0.0)),
        )

    async def snapshots(self, tag: str | None = None) -> list[Stored]:
        args = ["snapshots", "--json"] + (["--tag", tag] if tag else [])
        listed = orjson.loads(await self.run(args) or b"[]") or []
        return [Stored(s["id"], _unix(s["time"]), tuple(s.get("tags") or ()), s.get("hostname", "")) for s in listed]

    async def forget(self, ids: Sequence[str]) -> None:
        if ids:
            await self.run(["forget", "--prune", *ids])

    async def check(self, read_data: str) -> None:
        await self.run(["check", f"--read-data-subset={read_data}"])

    async def restore(self, snapshot: str, target: Path) -> None:
        await self.run(["restore", snapshot, "--target", str(target)])


def _unix(text: str) -> float:
    # restic writes nanoseconds ("2026-11-28T16:37:36.667370687Z"); Python reads microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
