"""An image build: BuildKit through a docker client that has it (DESIGN.md: Debian's /usr/bin/docker here),
run as a child process so that the event loop never waits on it, stopped at the build timeout."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from activator.runtime.labels import LABEL_DEPLOYMENT, LABEL_RELEASE, LABEL_SITE

TAIL = 20  # lines of the build's output a failure reports
LINE_MAX = 4096  # characters of one line of output kept (a line of minified JavaScript can be megabytes)
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL of a build's client
PRUNE_LIMIT = 60.0  # seconds a trim of the build cache may take


class BuildFailed(Exception):
    """The build failed, or ran past its timeout: `reason` says which, `tail` holds its last lines."""

    def __init__(self, reason: str, tail: list[str]) -> None:
        self.reason, self.tail = reason, tail
        super().__init__(reason)


async def build_image(
    docker: str,
    context: Path,
    dockerfile: str | None,
    tag: str,
    labels: dict[str, str],
    limit: float,
    on_line: Callable[[str], None],
) -> None:
    """Build `context` into `tag` (with the generated Dockerfile, or the context's own). Every line of the
    build's output goes to on_line. Raises BuildFailed, with the last lines, on failure or timeout."""
    args = [docker, "build", "--progress=plain", "--tag", tag]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    args += ["--file", "-" if dockerfile is not None else str(context / "Dockerfile"), str(context)]
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    try:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: a timeout stops the client and nothing else
        )
    except OSError as exc:
        raise BuildFailed(f"cannot run {docker}: {exc}", []) from None
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((dockerfile or "").encode())
    proc.stdin.close()

    async def read() -> None:
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.read(1 << 16):  # by chunks: a line may be longer than any buffer
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            pending = pending[:LINE_MAX] if len(pending) > LINE_MAX else pending  # its start is what is kept
            for raw in lines:
                said(raw)
        if pending:
            said(pending)

    def said(raw: bytes) -> None:
        line = raw[:LINE_MAX].decode(errors="replace").rstrip()
        tail.append(line)
        on_line(line)

    try:
        async with asyncio.timeout(limit):
            await read()
            code = await proc.wait()
    except TimeoutError:
        raise BuildFailed(f"the build ran past its timeout of {limit:g}s and was stopped", list(tail)) from None
    finally:
        await _stop(proc)  # the client's end cancels the build in the engine
    if code != 0:
        raise BuildFailed(f"the build failed (docker build exited with {code})", list(tail))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the client's process group, SIGKILL if it has not gone after STOP_GRACE seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                await asyncio.shield(proc.wait())


async def prune_cache(docker: str, keep: int) -> str:
    """Trim BuildKit's layer cache to `keep` bytes, oldest first (`docker builder prune --keep-storage`): the
    cache makes builds fast, and without a bound it grows with every build. Returns its report line; never
    raises (a cache it could not trim is said, and trimmed after the next build)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            docker, "builder", "prune", "--force", "--keep-storage", str(keep),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "DOCKER_BUILDKIT": "1"},
        )  # fmt: skip
    except OSError as exc:
        return f"the build cache was not trimmed: {exc}"
    try:
        async with asyncio.timeout(PRUNE_LIMIT):
            out, _ = await proc.communicate()
    except TimeoutError:
        return f"the build cache was not trimmed within {PRUNE_LIMIT:g}s"
    finally:
        await _stop(proc)
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def image_labels(deployment: str, site: str, release: str) -> dict[str, str]:
    """Every image a build makes is labelled: clean-up removes only ours."""
    return {LABEL_DEPLOYMENT: deployment, LABEL_SITE: site, LABEL_RELEASE: release}


def image_tag(deployment: str, site: str, release: str) -> str:
    return f"dialup-{deployment}-{site}:{release}"
