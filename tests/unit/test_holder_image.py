"""The holders' build context: a Dockerfile and the busybox binary, nothing else from the host."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from activator.model import Container
from activator.runtime.holder_image import build_context
from activator.supervisor.holders import Holders


def test_context_holds_the_dockerfile_and_an_executable_busybox(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF not really")
    with tarfile.open(fileobj=build_context(busybox)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"Dockerfile", "busybox"}
        assert members["busybox"].mode == 0o755
        assert tar.extractfile("busybox").read() == b"\x7fELF not really"  # type: ignore[union-attr]
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert "FROM scratch" in dockerfile and "USER 65534" in dockerfile and '"sleep"' in dockerfile


def test_a_missing_busybox_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_context(tmp_path / "nope")


@pytest.mark.parametrize(
    ("mode", "joined"), [("container:abc123", "abc123"), ("default", None), ("bridge", None), ("", None)]
)
def test_which_holder_a_container_joined(mode: str, joined: str | None) -> None:
    assert Holders.joined(Container(id="x", status="created", network_mode=mode)) == joined
