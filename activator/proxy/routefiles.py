"""The sites' route files: for each site, the address Caddy sends its requests to (see proxy/render.py)."""

from __future__ import annotations

import os
from pathlib import Path


class RouteFiles:
    """One small file per site in `directory`, written whole or not at all (a rename), so that Caddy, which
    reads it at each request, never sees half an address. Blocking (file system calls): call from a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, site: str, address: str) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o755)  # whatever the umask: a Caddy of another user reads it (see statedir)
        path = self.directory / site
        if self.read(site) == address:
            return
        tmp = path.with_name(f".{site}.tmp")
        tmp.write_text(address + "\n")
        os.chmod(tmp, 0o644)  # readable by a Caddy that does not run as root (caddy.manage = false)
        os.replace(tmp, path)

    def remove(self, site: str) -> None:
        (self.directory / site).unlink(missing_ok=True)

    def read(self, site: str) -> str | None:
        try:
            return (self.directory / site).read_text().strip()
        except FileNotFoundError:
            return None
