"""The build's child process, with a stand-in for the docker client: its output line by line (however long a
line), its failure with the last lines, and its timeout stopping it (SIGKILL if it ignores SIGTERM)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from activator.builds import builder
from activator.builds.builder import LINE_MAX, BuildFailed, build_image, prune_cache


def client(tmp_path: Path, script: str) -> str:
    path = tmp_path / "docker"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return str(path)


async def test_a_failed_build_reports_its_last_lines_even_after_a_line_longer_than_any_buffer(tmp_path: Path) -> None:
    docker = client(
        tmp_path,
        'head -c 300000 /dev/zero | tr "\\\\0" x; echo; for i in $(seq 1 30); do echo "step $i"; done; exit 3\n',
    )
    lines: list[str] = []
    with pytest.raises(BuildFailed) as failed:
        await build_image(docker, tmp_path, "FROM scratch\n", "t:1", {}, 30.0, lines.append)
    assert failed.value.reason == "the build failed (docker build exited with 3)"
    assert failed.value.tail[-1] == "step 30" and len(failed.value.tail) == 20
    assert len(lines[0]) == LINE_MAX and lines[-1] == "step 30"


async def test_a_build_past_its_timeout_is_stopped_even_if_it_ignores_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builder, "STOP_GRACE", 0.5)
    marker = f"dialup-test-{tmp_path.name}"
    script = f"""echo started; exec sh -c 'trap "" TERM; while :; do sleep 1; done' {marker}\n"""
    docker = client(tmp_path, script)
    began = time.monotonic()
    with pytest.raises(BuildFailed, match=r"past its timeout of 0\.5s") as failed:
        await build_image(docker, tmp_path, None, "t:1", {}, 0.5, lambda line: None)
    assert failed.value.tail == ["started"]
    assert time.monotonic() - began < 20
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


async def test_trimming_the_cache_never_raises(tmp_path: Path) -> None:
    assert (await prune_cache(client(tmp_path, "echo 'Total reclaimed space: 0B'\n"), 1)) == "Total reclaimed space: 0B"
    assert "not trimmed" in await prune_cache(str(tmp_path / "missing"), 1)
