"""net.ipv4.tcp_migrate_req: the kernel moves the connections queued on a listening socket that Caddy closes
on a reload to the new one, instead of resetting them (Linux 5.14 and later; Caddy listens with SO_REUSEPORT)."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def migrate_connections(path: Path = MIGRATE_REQ) -> str:
    """Turn it on. Returns "on", or why it is not (for status and the log)."""
    try:
        if path.read_text().strip() == "1":
            return "on"
        path.write_text("1\n")
    except FileNotFoundError:
        why = "off: this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 or later has)"
    except PermissionError:
        why = "off: setting net.ipv4.tcp_migrate_req needs root (sysctl -w net.ipv4.tcp_migrate_req=1)"
    except OSError as exc:
        why = f"off: {exc}"
    else:
        log.info("net.ipv4.tcp_migrate_req = 1: connections queued during a Caddy reload are migrated, not reset")
        return "on"
    log.warning("%s; new connections may be reset while Caddy reloads its config at a route switch", why)
    return why
