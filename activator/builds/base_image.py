"""The Node.js base image that node app builds start FROM, made on this machine.

No image registry is reachable here, so `FROM node:...` cannot be pulled. Debian's package archive is
reachable: debootstrap makes a minimal bookworm root, apt installs Debian's nodejs and npm into it, and
`docker import` turns it into an image. The tag carries a hash of the recipe, so the image is built once per
machine (a few minutes) and again only when the recipe changes. Blocking: call it from a thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

SUITE = "bookworm"
PACKAGES = ("nodejs", "npm", "ca-certificates")
STRIP = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale")
CHANGES = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "WORKDIR /app")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


class BaseImageError(Exception):
    """A step failed: the message names the command and ends with the last lines of its output."""


def node_base_recipe() -> str:
    # Everything that decides the image's content is in here: change any of it and the tag changes.
    return (
        f"dialup node base, recipe 1\nsuite: {SUITE} (+ {SUITE}-security)\nvariant: debootstrap minbase\n"
        f"packages: {' '.join(PACKAGES)} (apt, --no-install-recommends, after apt-get upgrade)\n"
        f"stripped: {' '.join(STRIP)}\nchanges: {'; '.join(CHANGES)}\n"
    )


def node_base_tag() -> str:
    return "dialup-node-base:" + hashlib.sha256(node_base_recipe().encode()).hexdigest()[:12]


def _host_mirror(suite: str, default: str) -> str:
    """The archive this machine's apt uses for `suite` (one-line or deb822 sources), else the default."""
    apt = Path("/etc/apt")
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            words = re.sub(r"\[[^]]*\]", "", line.partition("#")[0]).split()  # without [options]
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields = [ln.partition(":") for ln in stanza.splitlines() if not ln.startswith(("#", " "))]
            f = {key.strip().lower(): value.split() for key, _, value in fields}
            if "deb" in f.get("types", []) and suite in f.get("suites", []) and f.get("enabled") != ["no"]:
                return f.get("uris", [default])[0]
    return default


def _tail(*outputs: bytes, lines: int = 15) -> str:
    return "\n".join(b"\n".join(outputs).decode(errors="replace").strip().splitlines()[-lines:])


def _run(cmd: Sequence[str], env: dict[str, str] | None = None) -> None:
    try:
        subprocess.run(cmd, check=True, capture_output=True, env=env)
    except subprocess.CalledProcessError as exc:
        raise BaseImageError(f"{' '.join(cmd)} exited {exc.returncode}:\n{_tail(exc.stdout, exc.stderr)}") from exc
    except OSError as exc:
        raise BaseImageError(f"{' '.join(cmd)}: {exc}") from exc


def _mounts_under(root: Path) -> list[str]:
    # mountinfo field 5 is the mount point, with space, tab, newline and backslash escaped in octal.
    unescape = partial(re.sub, r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)))
    points = [unescape(ln.split()[4]) for ln in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((p for p in points if p.startswith(f"{root}/")), key=len, reverse=True)


def _remove_root(scratch: Path, root: Path) -> None:
    # debootstrap mounts /proc and /sys in the root and may leave them on failure: removing the tree with
    # them still mounted would delete through them, so unmount (lazily if busy), and keep the tree if in doubt.
    for point in _mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True).returncode:
            subprocess.run(["umount", "-l", point], capture_output=True)
    if left := _mounts_under(root):
        raise BaseImageError(f"left {scratch} in place: still mounted beneath it: {', '.join(left)}")
    shutil.rmtree(scratch)


def _build(tag: str, root: Path, docker: str, mirror: str, step: Callable[[str], None]) -> None:
    if not shutil.which("debootstrap", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        _run(["apt-get", "update", "-q"], env={**os.environ, **APT_ENV})  # stale lists would 404
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"], {**os.environ, **APT_ENV})
        step("installed debootstrap")
    # Only the base system comes from debootstrap: its resolver ignores virtual packages (Provides), and
    # npm's ~380 dependencies need them (node-has is provided by node-function-bind), so
    # `--include=nodejs,npm` fails to configure npm. apt in a chroot resolves them, and adds security updates.
    _run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror])
    step(f"debootstrap --variant=minbase {SUITE} from {mirror}")
    security = _host_mirror(f"{SUITE}-security", DEFAULT_SECURITY)
    (root / "etc/apt/sources.list").write_text(f"deb {mirror} {SUITE} main\ndeb {security} {SUITE}-security main\n")
    chroot = ["chroot", str(root), "apt-get", "-q", "-y"]
    _run([*chroot, "update"], env=APT_ENV)
    _run([*chroot, "upgrade"], env=APT_ENV)
    _run([*chroot, "install", "--no-install-recommends", *PACKAGES], env=APT_ENV)
    step(f"apt-get install {' '.join(PACKAGES)}")
    for path in STRIP:  # emptied, not removed: apt and dpkg expect the directories to exist
        for entry in (root / path).iterdir() if (root / path).is_dir() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (root / "etc/resolv.conf").write_text("")  # the host's, copied by debootstrap; Docker mounts its own
    changes = [*CHANGES, f"LABEL dialup.base=node dialup.recipe={tag.partition(':')[2]}"]
    # Streamed: no 300 MB tar file. tar's errors go to a file, not a pipe nobody reads while import runs.
    tar_cmd = ["tar", "-C", str(root), "--numeric-owner", "--one-file-system", "-c", "."]
    with tempfile.TemporaryFile() as err, subprocess.Popen(tar_cmd, stdout=subprocess.PIPE, stderr=err) as tar:
        cmd = [docker, "import", *(a for c in changes for a in ("--change", c)), "-", tag]
        imp = subprocess.run(cmd, stdin=tar.stdout, capture_output=True)
        if imp.returncode:
            tar.kill()  # else it blocks for good writing to a pipe nobody reads
        if tar.wait() or imp.returncode:
            err.seek(0)
            why = f"tar exited {tar.returncode}, import {imp.returncode}"
            raise BaseImageError(f"{' '.join(tar_cmd)} | {' '.join(cmd)}: {why}:\n{_tail(err.read(), imp.stderr)}")
    step(f"docker import {tag}")


def ensure_node_base(
    *, log: Callable[[str], None] = print, docker: str = "/usr/bin/docker", mirror: str | None = None
) -> str:
    """The node base image's tag, built first if this machine does not have it."""
    tag, start = node_base_tag(), time.monotonic()

    def step(what: str) -> None:
        log(f"{tag}: {what} ({time.monotonic() - start:.1f} s)")

    scratch_dir = Path(os.environ.get("TMPDIR") or "/var/tmp")
    # One build at a time per machine (processes and threads alike: flock is per open file); whoever waited
    # for a build finds its image.
    with open(scratch_dir / "dialup-node-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if subprocess.run([docker, "image", "inspect", tag], capture_output=True).returncode == 0:
            log(f"{tag}: reused (already on this machine)")
            return tag
        step("not on this machine: building it (a few minutes)")
        scratch = Path(tempfile.mkdtemp(prefix="dialup-node-base-", dir=scratch_dir))
        try:
            _build(tag, scratch / "root", docker, mirror or _host_mirror(SUITE, DEFAULT_MIRROR), step)
        finally:
            _remove_root(scratch, scratch / "root")
    step("built")
    return tag


if __name__ == "__main__":
    # The tag alone on stdout, for scripts; progress on stderr.
    print(ensure_node_base(log=lambda line: print(line, file=sys.stderr)))
