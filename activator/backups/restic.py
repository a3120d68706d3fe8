"""restic, run as a child process at the lowest CPU and I/O priority: the repository made on first use (with a
password file made 0600), backups with their progress, snapshots, forget and prune, check, restore. Every exit
code but 0 is a failure (restic's 3, "some files could not be read", too: a backup that left something out is
not a backup)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("activator.backups")
TAIL = 2000  # characters of restic's stderr kept for the reason of a failure
LINE_LIMIT = 1 << 24  # a line of restic's JSON progress, at most
STOP_WAIT = 10.0  # seconds a restic told to stop (SIGINT: it removes its lock) has before it is killed


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
        self._ready = False  # the repository was found (or made) and unlocked by this process
        self._opening = asyncio.Lock()  # (one at a time: two would both find the folder empty, and both init)

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
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        try:
            if lines is None:  # all of it (a listing is one JSON line, as long as the repository's history)
                out, err = await proc.communicate()
            else:
                reading = asyncio.ensure_future(proc.stderr.read())
                async for line in proc.stdout:
                    lines(line)
                await proc.wait()
                out, err = b"", await reading
        except BaseException:  # cancelled (dialup stopping): restic ends too, its repository stays usable
            await asyncio.shield(_interrupt(proc))
            raise
        if proc.returncode != 0:
            raise ResticFailed(args[0], proc.returncode, err.decode(errors="replace"))
        return out

    async def ensure_repository(self) -> None:
        """The repository, made if its folder is missing or empty (compressed: repository format 2), with a new
        password file. Anything else that keeps restic from opening it (the folder of an unmounted disk, a lost
        password file) is a failure, never a new repository. Once per process: each run opens it (~0.5 s)."""
        async with self._opening:
            if not self._ready:
                await self._open()

    async def _open(self) -> None:
        await asyncio.to_thread(self.cache_dir.mkdir, 0o700, True, True)
        if await asyncio.to_thread(_empty_or_missing, self.repository):
            await asyncio.to_thread(self.repository.mkdir, 0o700, True, True)
            await asyncio.to_thread(ensure_password_file, self.password_file)
            await self.run(["init", "--repository-version", "2"])
        elif not await asyncio.to_thread(self.password_file.exists):
            raise ResticFailed("open", None, f"{self.password_file}: no password file for {self.repository}")
        await self.run(["unlock"])  # locks left by a restic killed midway (ours only run one at a time)
        self._ready = True

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

        args = ["backup", "--json", "--host", host]
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

    async def forget(self, ids: Sequence[str], prune: bool = True) -> None:
        if ids:
            await self.run(["forget", *(["--prune"] if prune else []), *ids])

    async def check(self, read_data: str) -> None:
        await self.run(["check", f"--read-data-subset={read_data}"])

    async def restore(self, snapshot: str, target: Path) -> None:
        await self.run(["restore", snapshot, "--target", str(target)])


def _unix(text: str) -> float:
    # restic writes nanoseconds and the offset ("2026-11-28T16:37:36.667370687+05:30"); Python reads microseconds.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _empty_or_missing(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


async def _interrupt(proc: asyncio.subprocess.Process) -> None:
    """SIGINT (restic then removes its lock), then SIGKILL if it has not ended in STOP_WAIT."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), STOP_WAIT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
