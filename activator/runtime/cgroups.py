"""A container's memory use from its cgroup files: microseconds a read, where `docker stats` takes a second."""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _candidates(container_id: str) -> list[Path]:
    return [
        ROOT / "memory" / "docker" / container_id,  # cgroup v1, cgroupfs driver
        ROOT / "memory" / "system.slice" / f"docker-{container_id}.scope",  # v1, systemd driver
        ROOT / "system.slice" / f"docker-{container_id}.scope",  # v2, systemd driver
        ROOT / "docker" / container_id,  # v2, cgroupfs driver
    ]


class CgroupMemory:
    """Reads working-set memory per container (usage less inactive file cache, as `docker stats` counts it)."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self._paths: dict[str, Path] = {}

    def path(self, container_id: str) -> Path | None:
        if container_id not in self._paths:
            for candidate in _candidates(container_id):
                candidate = self.root / candidate.relative_to(ROOT)
                if candidate.is_dir():
                    self._paths[container_id] = candidate
                    break
            else:
                return None
        return self._paths[container_id]

    def usage(self, container_id: str) -> int | None:
        """Bytes in use, or None when the container has no memory cgroup (not running)."""
        path = self.path(container_id)
        if path is None:
            return None
        try:
            if (path / "memory.current").exists():  # cgroup v2
                used = int((path / "memory.current").read_text())
                inactive = _stat(path / "memory.stat", "inactive_file")
            else:
                used = int((path / "memory.usage_in_bytes").read_text())
                inactive = _stat(path / "memory.stat", "total_inactive_file")
        except (OSError, ValueError):
            self._paths.pop(container_id, None)  # gone (stopped or removed): look again next time
            return None
        return max(0, used - inactive)


def _stat(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0
