"""The network holders' image, built from local files only: a static busybox that sleeps, as nobody."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import docker.errors

from activator.config import HolderConfig
from activator.errors import RuntimeUnavailable

LABEL_IMAGE = "dialup.image"  # "holder": marks the image as ours (never pruned: no deployment label on it)

# PID 1 is Docker's init (the holder runs with init=True), so a stop takes milliseconds; sleep's argument is the
# largest a 32-bit busybox takes, about 68 years.
DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
LABEL {LABEL_IMAGE}=holder
USER 65534:65534
ENTRYPOINT ["/bin/busybox", "sleep", "2147483647"]
"""


def build_context(busybox: Path) -> io.BytesIO:
    """A tar build context with the Dockerfile and the busybox binary. Raises FileNotFoundError if it is missing."""
    binary = busybox.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data, mode in (("Dockerfile", DOCKERFILE.encode(), 0o644), ("busybox", binary, 0o755)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def ensure_image(api: Any, holder: HolderConfig) -> bool:
    """Build the image with the SDK's low-level client unless the engine has it; True if it was built. Blocks:
    DockerRuntime runs it in a worker thread."""
    try:
        api.inspect_image(holder.image)
        return False
    except docker.errors.ImageNotFound:
        pass
    try:
        context = build_context(holder.busybox)
    except OSError as exc:
        raise RuntimeUnavailable(
            f"the holder image {holder.image} is missing and cannot be built from {holder.busybox} ({exc}):"
            ' install busybox-static, set holder.busybox, or set network = "plain" on every site'
        ) from None
    try:
        for _ in api.build(fileobj=context, custom_context=True, tag=holder.image, rm=True):
            pass
        api.inspect_image(holder.image)
    except docker.errors.DockerException as exc:
        raise RuntimeUnavailable(f"could not build the holder image {holder.image}: {exc}") from None
    return True
