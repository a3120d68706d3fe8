"""Deploys: a site's source to a live release (snapshot, hash, queue, build, go live, clean up), and rollbacks.

A static site's release is a folder Caddy serves (publish.py); any other site's is an image whose container
takes over through the supervisor's swap. A build that fails, or runs past its timeout, changes nothing live.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from activator.builds import publish, sources
from activator.builds.builder import BuildFailed, build_image, image_labels, image_tag, prune_cache
from activator.builds.limits import bound_builds
from activator.builds.queue import BuildQueue
from activator.builds.recipes import RECIPES_VERSION, NoRecipe, dockerfile
from activator.builds.releases import Release, Releases
from activator.config import Config, SiteConfig
from activator.errors import SwapFailed
from activator.interfaces import EventLog
from activator.model import EventKind
from activator.supervisor import Supervisor
from activator.tempfiles import BUILDS

log = logging.getLogger("activator.builds")

Progress = Callable[[dict[str, Any]], None]


class DeployFailed(Exception):
    """A deploy or rollback that changed nothing live: why, and the build's last lines if it built."""

    def __init__(self, site: str, reason: str, tail: list[str] | None = None, *, recorded: bool = False) -> None:
        self.site, self.reason, self.tail = site, reason, tail or []
        self.recorded = recorded  # its event row is written already
        super().__init__(f"{site}: {reason}")


class UnknownSite(DeployFailed):
    pass


class Deployer:
    """Writer of the releases (their rows, folders and images) and of each site's deploy under way: one deploy
    per site at a time, at most [builds] parallel builds at once."""

    def __init__(
        self,
        config: Config,
        releases: Releases,
        events: EventLog,
        supervisor: Supervisor,
        remove_image: Callable[[str], Awaitable[None]],
    ) -> None:
        self.config, self._builds = config, config.builds
        self._releases, self._events, self._supervisor = releases, events, supervisor
        self._remove_image = remove_image
        self.queue = BuildQueue(self._builds.parallel)
        self.doing: dict[str, str] = {}  # site -> what its deploy does now (status)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Release]] = set()
        self._chores: set[asyncio.Task[None]] = set()  # clean-ups after deploys

    def reconfigure(self, config: Config) -> None:
        """The config as reloaded: its sites, and [builds] (a queue's width applies to builds not yet begun)."""
        self.config, self._builds = config, config.builds
        self.queue.resize(config.builds.parallel)

    def site(self, name: str) -> SiteConfig:
        found = next((s for s in self.config.sites if s.name == name), None)
        if found is None:
            raise UnknownSite(name, "no such site in the config")
        return found

    # -- the entry points (each runs as a task of its own: a client that goes away stops nothing) --------

    def deploy(
        self, name: str, progress: Progress, *, folder: Path | None = None, archive: Path | None = None
    ) -> asyncio.Task[Release]:
        """Deploy from the site's configured source, a folder (`dialup deploy --from`), or an uploaded archive
        (the admin API; the archive is the deploy's to delete)."""
        return self._spawn(self._deploy(self.site(name), progress, folder, archive))

    def rollback(self, name: str, progress: Progress) -> asyncio.Task[Release]:
        return self._spawn(self._rollback(self.site(name), progress))

    def _spawn(self, work: Coroutine[Any, Any, Release]) -> asyncio.Task[Release]:
        task: asyncio.Task[Release] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        tasks = [*self._tasks, *self._chores]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def deploy_missing(self) -> None:
        """At startup: every site with a source and no release yet is deployed from it."""
        live = await self._releases.live()
        for site in self.config.sites:
            found = live.get(site.name)
            if site.source is not None and not site.image and (found is None or found.kind != _release_kind(site)):
                if await asyncio.to_thread(site.source.is_dir):
                    self.deploy(site.name, lambda _: None).add_done_callback(retrieved)
                else:
                    log.warning("site %s: its source %s is not there yet: deploy it once it is", site.name, site.source)

    # -- deploy --------------------------------------------------------------------------------

    async def _deploy(self, site: SiteConfig, progress: Progress, folder: Path | None, archive: Path | None) -> Release:
        began = time.monotonic()
        say = _teller(progress, began)
        lock = self._locks.setdefault(site.name, asyncio.Lock())
        if lock.locked():
            say({"step": "waiting", "why": "another deploy of this site is under way"})
        try:
            async with lock:
                scratch = Path(tempfile.mkdtemp(prefix=f"build-{site.name}-", dir=self.scratch_dir()))
                try:
                    return await self._deploy_locked(site, say, folder, archive, scratch, began)
                finally:
                    self.doing.pop(site.name, None)
                    await asyncio.to_thread(shutil.rmtree, scratch, True)
        except DeployFailed as exc:
            log.warning("site %s: deploy failed: %s", site.name, exc.reason)
            if not exc.recorded:  # refused before any build (a bad source, a folder not allowed)
                await self._events.record(site.name, EventKind.BUILD_FAILED, "deploy", detail=exc.reason)
            raise
        finally:
            if archive is not None:
                await asyncio.to_thread(archive.unlink, True)

    async def _deploy_locked(
        self, site: SiteConfig, say: Progress, folder: Path | None, archive: Path | None, scratch: Path, began: float
    ) -> Release:
        src = scratch / "src"
        try:
            if archive is not None:
                say({"step": "unpack"})
                await asyncio.to_thread(sources.unpack, archive, src, self._builds.max_upload)
            else:
                given = folder or site.source
                if given is None:
                    raise DeployFailed(site.name, "it has no `source` in the config: give a folder (--from DIR)")
                if not given.is_absolute():
                    raise DeployFailed(site.name, f"{given} is not an absolute path")
                if not self._builds.allows(given) and not _beneath(given, self.config.server.workspaces_dir):
                    roots = ", ".join(map(str, self._builds.source_roots))
                    raise DeployFailed(
                        site.name, f"{given} is outside the allowed folders ([builds] source_roots: {roots})"
                    )
                say({"step": "snapshot", "source": str(given)})
                await asyncio.to_thread(sources.snapshot, given, src, self._builds.max_upload)
            digest = self._build_key(site, await asyncio.to_thread(sources.content_hash, src))
        except sources.BadSource as exc:
            raise DeployFailed(site.name, str(exc)) from None
        say({"step": "hashed", "source_hash": digest[:12]})
        history = await self._history(site)
        live = next((r for r in history if r.live), None)
        if live is not None and live.source_hash == digest:
            say({"step": "unchanged", "release": live.id})
            return live
        same = next((r for r in history if r.source_hash == digest and not r.removed), None)
        if same is not None:  # built before (a revert): no rebuild
            say({"step": "reused", "release": same.id})
            return await self._go_live(site, same, say, EventKind.DEPLOYED)
        release = await self._build(site, src, digest, say)
        done = await self._go_live(site, release, say, EventKind.DEPLOYED)
        self._background(self._prune(site))
        say({"step": "done", "release": done.id, "seconds": round(time.monotonic() - began, 3)})
        return done

    async def _history(self, site: SiteConfig) -> list[Release]:
        """The site's releases, newest first; one of the other kind (the site changed kind) is none of it now."""
        kind = _release_kind(site)
        return [r for r in await self._releases.of(site.name) if r.kind == kind]

    def _build_key(self, site: SiteConfig, content: str) -> str:
        """What decides a release: its files, and for an image what else the build bakes in (the kind's
        recipe, the port it sets, the base image), so that a change of those builds anew."""
        if site.serves_files:
            return content
        inputs = f"{content}\n{site.kind}\n{site.port}\n{self._builds.node_image}\n{RECIPES_VERSION}"
        return hashlib.sha256(inputs.encode()).hexdigest()

    async def _build(self, site: SiteConfig, src: Path, digest: str, say: Progress) -> Release:
        self.doing[site.name] = "queued"
        async with self.queue.slot(lambda place: say({"step": "queued", "place": place})):
            self.doing[site.name] = "building"
            n = await self._releases.next_number(site.name)
            rid = f"r{n}"
            await self._events.record(site.name, EventKind.BUILD_STARTED, "deploy", detail=rid)
            say({"step": "build", "release": rid})
            began = time.monotonic()
            try:
                if site.serves_files:
                    kind, artifact = "files", await self._publish(site, src, rid, say)
                else:
                    kind, artifact = "image", await self._image(site, src, rid, say)
            except (BuildFailed, NoRecipe, OSError) as exc:
                reason = exc.reason if isinstance(exc, BuildFailed) else str(exc)
                tail = exc.tail if isinstance(exc, BuildFailed) else []
                await self._events.record(site.name, EventKind.BUILD_FAILED, "deploy", detail=f"{rid}: {reason}")
                raise DeployFailed(site.name, reason, tail, recorded=True) from None
            seconds = time.monotonic() - began
        await self._events.record(site.name, EventKind.BUILD_DONE, "deploy", seconds * 1000, rid)
        say({"step": "built", "release": rid, "build_seconds": round(seconds, 3)})
        return await self._releases.add(site.name, n, digest, kind, artifact, seconds)

    async def _publish(self, site: SiteConfig, src: Path, rid: str, say: Progress) -> str:
        if (src / "Dockerfile").exists():
            raise NoRecipe("a static site served from its files has no Dockerfile: give it another kind or an image")
        compressed, saved = await asyncio.to_thread(publish.precompress, src)
        say({"step": "compressed", "files": compressed, "bytes_saved": saved})
        releases = self.config.server.user_sites_dir / site.name / "releases"
        await asyncio.to_thread(_made_readable, releases)
        target = releases / rid
        # A folder of that number without a release row: a deploy the activator's end cut short. Not a release.
        await asyncio.to_thread(shutil.rmtree, target, True)
        await asyncio.to_thread(src.rename, target)
        return str(target)

    async def _image(self, site: SiteConfig, src: Path, rid: str, say: Progress) -> str:
        try:
            say(
                {
                    "step": "limits",
                    "detail": await asyncio.to_thread(bound_builds, self._builds.memory, self._builds.cpus),
                }
            )
        except OSError as exc:
            say({"step": "limits", "detail": f"builds are not bounded: {exc}"})
        recipe = await asyncio.to_thread(dockerfile, site.kind, src, self._builds.node_image, site.port)
        say(
            {
                "step": "recipe",
                "detail": "the source's Dockerfile" if recipe is None else f"dialup's {site.kind} recipe",
            }
        )
        tag = image_tag(self.config.server.name, site.name, rid)
        labels = image_labels(self.config.server.name, site.name, rid)
        try:
            await self._build_image(src, recipe, tag, labels, say)
        finally:
            said = await prune_cache(self._builds.docker, self._builds.cache)
            say({"step": "cache", "detail": said or "build cache trimmed"})
        return tag

    async def _build_image(
        self, src: Path, recipe: str | None, tag: str, labels: dict[str, str], say: Progress
    ) -> None:
        await build_image(
            self._builds.docker,
            src,
            recipe,
            tag,
            labels,
            self._builds.timeout,
            lambda line: say({"step": "output", "line": line}),
        )

    # -- going live ------------------------------------------------------------------------------

    async def _go_live(self, site: SiteConfig, release: Release, say: Progress, kind: EventKind) -> Release:
        self.doing[site.name] = "swapping"
        if release.kind == "files":
            await asyncio.to_thread(publish.go_live, self.config.server.user_sites_dir / site.name, release.id)
            how = "files switched"
        else:
            running = self._supervisor.sites.get(site.name)
            if running is None:
                raise DeployFailed(site.name, "it is no longer in the config (a reload removed it)")
            say({"step": "swap", "release": release.id})
            artifact = release.artifact
            try:
                how = await self._supervisor.swapper.swap(
                    running, lambda settings: replace(settings, release=artifact), "deploy"
                )
            except SwapFailed as exc:
                await self._events.record(
                    site.name, EventKind.BUILD_FAILED, "swap", detail=f"{release.id}: {exc.reason}"
                )
                raise DeployFailed(site.name, f"{release.id} did not take over: {exc.reason}", recorded=True) from None
        await self._releases.made_live(site.name, release.n)
        await self._events.record(
            site.name, kind, "deploy" if kind is EventKind.DEPLOYED else "rollback", detail=release.id
        )
        say({"step": "live", "release": release.id, "how": how})
        return release

    async def _rollback(self, site: SiteConfig, progress: Progress) -> Release:
        say = _teller(progress, time.monotonic())
        async with self._locks.setdefault(site.name, asyncio.Lock()):
            history = await self._history(site)
            live = next((r for r in history if r.live), None)
            # The release numbered just below the live one (a second rollback goes further back).
            earlier = [r for r in history if not r.removed and (live is None or r.n < live.n)]
            if not earlier:
                raise DeployFailed(site.name, "there is no earlier release to go back to")
            try:
                return await self._go_live(site, earlier[0], say, EventKind.ROLLED_BACK)
            finally:
                self.doing.pop(site.name, None)

    # -- clean-up ----------------------------------------------------------------------------------

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _prune(self, site: SiteConfig) -> None:
        """Keep the newest keep_releases (and the live one); remove the folders and images of the rest, once
        the container the last swap replaced is gone (its image is in use until then)."""
        if (running := self._supervisor.sites.get(site.name)) is not None:
            await self._supervisor.swapper.retired(running)
        history = [r for r in await self._releases.of(site.name) if not r.removed]
        for old in [r for r in history[self._builds.keep_releases :] if not r.live]:
            try:
                if old.kind == "files":
                    await asyncio.to_thread(shutil.rmtree, old.artifact)
                else:
                    await self._remove_image(old.artifact)
            except Exception as exc:
                log.warning("site %s: could not remove release %s (%s): %r", site.name, old.id, old.artifact, exc)
                continue
            await self._releases.mark_removed(site.name, old.n)

    def scratch_dir(self) -> Path:
        """Build scratch lives in state_dir/temp/builds (the same file system as user-sites: a rename)."""
        scratch = self.config.server.temp_dir / BUILDS
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch

    def clear_scratch(self) -> None:
        """At startup, before any deploy: what deploys an earlier activator did not finish left behind."""
        shutil.rmtree(self.config.server.temp_dir / BUILDS, ignore_errors=True)


def retrieved(task: asyncio.Task[Release]) -> None:
    """A deploy nobody waits for (at startup, after a reload): its failure is logged and recorded already."""
    if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, DeployFailed):
        log.error("deploy failed: %r", exc)


def _beneath(path: Path, folder: Path) -> bool:
    real, top = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return top in real.parents


def _release_kind(site: SiteConfig) -> str:
    return "files" if site.serves_files else "image"


def _made_readable(releases: Path) -> None:
    """user-sites/SITE/releases, readable by a Caddy of another user (the state directory is 0711)."""
    releases.mkdir(parents=True, exist_ok=True)
    for folder in (releases.parent.parent, releases.parent, releases):
        folder.chmod(0o755)


def _teller(progress: Progress, began: float) -> Progress:
    """Progress with the seconds since the deploy began."""

    def say(event: dict[str, Any]) -> None:
        progress({**event, "elapsed": round(time.monotonic() - began, 3)})

    return say
