"""A site's workspace (dev-workspaces/SITE), made from the site's source the first time it is needed, and its
development container's package cache (dev-cache/SITE): both owned by the development containers' user, so the
dev server and npm can change what the editor wrote. Blocking: call from a thread."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from activator.builds.sources import BadSource, snapshot
from activator.config import Config, SiteConfig
from activator.editor.devserver import dev_user

log = logging.getLogger("activator.editor")
WORKSPACE_COPY_LIMIT = 500 << 20  # a source larger is not copied into a workspace


def ensure_workspace(root: Path, source: Path | None, owner: tuple[int, int]) -> Path:
    """The workspace at `root`: a copy of `source` (not edited in place) or empty, made if it is missing."""
    if root.is_dir():
        return root
    root.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # Made beside and renamed into place: a copy cut short is never taken for a workspace.
    partial = root.with_name(f".{root.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)  # fd-based: links in it are removed, not followed
    try:
        if source is not None and source.is_dir():
            # Without its links: a workspace's files are served as they are (a static site's preview, by Caddy,
            # which follows links), and a link that points inside here could point out once moved.
            snapshot(source, partial, WORKSPACE_COPY_LIMIT, links=False)
        else:
            partial.mkdir(mode=0o755)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _own(partial, owner)
    os.rename(partial, root)
    return root


def ensure_development(dev: SiteConfig, source: Path | None, owner: tuple[int, int]) -> None:
    """What a development container binds: its site's workspace and its cache folder (mounts[0] and [1])."""
    (workspace, _, _), (cache, _, _) = dev.mounts[0], dev.mounts[1]
    ensure_workspace(Path(workspace), source, owner)
    Path(cache).mkdir(mode=0o755, parents=True, exist_ok=True)
    _own(Path(cache), owner, walk=False)
    # The container binds its cache at /app/node_modules: the folder must be there, or the engine makes it, as root.
    node_modules = Path(workspace) / "node_modules"
    if not node_modules.is_symlink():
        node_modules.mkdir(mode=0o755, exist_ok=True)
        _own(node_modules, owner, walk=False)


def _own(top: Path, owner: tuple[int, int], *, walk: bool = True) -> None:
    """Give `top` (and with walk, everything beneath it, links themselves not followed) to `owner`."""
    if os.geteuid() != 0:
        return  # made by dialup's own user, the owner already
    os.chown(top, *owner, follow_symlinks=False)
    if not walk:
        return
    for _, dirs, files, dir_fd in os.fwalk(top, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)


def prepare_workspaces(config: Config) -> None:
    """With the editor on: every editable site's workspace (so a preview answers before the editor opens it), and
    every development site's cache, before its container is made (it binds both)."""
    if not config.editor.enabled:
        return
    sources = {s.name: s.source for s in config.sites}
    for site in config.sites:
        try:
            if site.develops:
                ensure_development(site, sources.get(site.develops), dev_user())
            elif site.source is not None:
                ensure_workspace(config.server.workspaces_dir / site.name, site.source, dev_user())
        except (BadSource, OSError) as exc:  # that site's workspace alone: the others, and dialup, go on
            log.error("site %s: its workspace could not be made from its source: %s", site.name, exc)
