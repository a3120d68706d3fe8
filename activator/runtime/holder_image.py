"""The network holders' image, built from local files only: a static busybox that sleeps, as nobody."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

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
