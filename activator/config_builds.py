"""The [builds] table: how sites are built from source (activator/builds/), and where sources may come from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from activator.config_values import (
    ConfigError,
    _number,
    _path_value,
    _positive,
    _strings,
    _Table,
    _typed,
    parse_duration,
    parse_size,
)


@dataclass(frozen=True)
class BuildsConfig:
    parallel: int = 2  # builds at once; more wait in a queue
    timeout: float = 600.0  # a build past it is stopped; the live release keeps serving
    keep_releases: int = 3  # older releases, their images and files, are removed
    # Sources (a site's `source`, `dialup deploy --from DIR`) must lie beneath one of these folders.
    source_roots: tuple[Path, ...] = (Path("/srv/sites"),)
    node_image: str = "node:22-slim"  # the base image of the node, astro and next recipes
    docker: str = "/usr/bin/docker"  # a docker client that can do BuildKit builds (see DESIGN.md, known traps)
    max_upload: int = 200 * 1024 * 1024  # a deploy's tar.gz, and what it unpacks to, at most
    cache: int = 2 * 1024 * 1024 * 1024  # BuildKit's layer cache is trimmed to this after each build
    memory: int = 1024 * 1024 * 1024  # what a build's steps may use in all ...
    cpus: float = 1.0  # ... and of the CPU: a build never takes the whole box

    def allows(self, source: Path) -> bool:
        """The folder (resolved: no symlink leads out) lies beneath one of the allowed roots."""
        real = Path(os.path.realpath(source))
        return any(real == root or root in real.parents for root in map(_real, self.source_roots))


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def read_builds(t: _Table, base_dir: Path) -> BuildsConfig:
    """Relative source roots are taken from the config file's directory, as state_dir is."""
    d = BuildsConfig()
    roots = t.get("source_roots", _strings, None)
    builds = BuildsConfig(
        parallel=t.get("parallel", _positive(_typed(int, "a whole number")), d.parallel),
        timeout=t.get("timeout", _positive(parse_duration), d.timeout),
        keep_releases=t.get("keep_releases", _positive(_typed(int, "a whole number")), d.keep_releases),
        source_roots=d.source_roots if roots is None else tuple(Path(os.path.abspath(base_dir / r)) for r in roots),
        node_image=t.get("node_image", _typed(str, "an image reference like 'node:22-slim'"), d.node_image),
        docker=t.get("docker", _path_value, d.docker),
        max_upload=t.get("max_upload", _positive(parse_size), d.max_upload),
        cache=t.get("cache", _positive(parse_size), d.cache),
        memory=t.get("memory", _positive(parse_size), d.memory),
        cpus=t.get("cpus", _positive(_number), d.cpus),
    )
    if not builds.source_roots:
        raise ConfigError(t.path, t.key("source_roots"), [], "name at least one folder")
    t.done()
    return builds
