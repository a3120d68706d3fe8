"""`dialup reload` and SIGHUP: the config file read again and applied without a restart. Sites added are made
(and started if persistent), sites removed are drained and removed, changed sites get a new container beside
the old one (a swap, as a deploy's) or just their new settings. A file that does not load, or that changes
what only a restart can ([server], [caddy], [holder]), changes nothing and says why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from activator.builds.deployer import Deployer, retrieved
from activator.builds.releases import Releases, with_releases
from activator.config import Config, ConfigError, SiteConfig, load_config
from activator.core.reloads import keep_release, plan, restart_needed
from activator.editor.folders import prepare_workspaces
from activator.errors import SwapFailed
from activator.monitor import Monitor
from activator.proxy.caddy import CaddyRouter
from activator.proxy.metrics import CaddyMetrics
from activator.supervisor import Supervisor

log = logging.getLogger("dialup")


class ReloadRefused(Exception):
    """The file cannot be applied: nothing was changed."""


class Reloader:
    """Writer of the config the activator runs (as read from its file); one reload at a time."""

    def __init__(
        self,
        config: Config,
        supervisor: Supervisor,
        router: CaddyRouter,
        deployer: Deployer,
        monitor: Monitor,
        releases: Releases,
        metrics: CaddyMetrics | None,
    ) -> None:
        self.config = config
        self._supervisor, self._router, self._deployer = supervisor, router, deployer
        self._monitor, self._releases, self._metrics = monitor, releases, metrics
        self._lock = asyncio.Lock()

    async def reload(self) -> dict[str, Any]:
        """Apply the file as it is now. Raises ConfigError (a bad file) or ReloadRefused, having changed nothing.
        Each site's change is applied on its own: one that fails is reported, and the next reload tries it again."""
        async with self._lock:
            new = await asyncio.to_thread(load_config, Path(self.config.path))
            if (needs := restart_needed(self.config, new)) is not None:
                raise ReloadRefused(f"{new.path}: {needs} changed: that needs a restart of dialup up")
            changes = plan(self.config, new)
            before = {s.name: s for s in self.config.sites}
            sup, outcome = self._supervisor, dict[str, str]()
            running = with_releases(new, await self._releases.live())
            log.info(
                "reloading %s: %d added, %d removed, %d changed", new.path, len(changes.added), len(changes.removed),
                len(changes.renewed) + len(changes.retuned),
            )  # fmt: skip
            # First what no request depends on: the new hosts (a removed site's are 404s at the activator now),
            # the budget, the thresholds, [builds].
            sup.reconfigure(running)
            self._monitor.reconfigure(running)
            self._deployer.reconfigure(new)
            if self._metrics is not None:
                self._metrics.reconfigure(running)
            # Sites removed: drained while Caddy still counts their requests (its config still names them).
            for name in changes.removed:
                outcome[name] = await self._step(name, "removed", self._remove(name, before[name].replica_of))
            effective = {s.name: s for s in running.sites}
            await asyncio.to_thread(prepare_workspaces, running)  # sites added: their workspaces
            for site in changes.added:
                if not site.serves_files:
                    outcome[site.name] = await self._step(site.name, "added", sup.add_site(effective[site.name]))
            # Then Caddy: the routes of the sites added, without those removed (one config load).
            self._router.reconfigure(running)
            await sup.routes.load()
            for name in changes.removed:  # a second instance's route file, named by its site's route until now
                if before[name].replica_of and name not in sup.sites:
                    await self._router.forget(name)
            for site in changes.retuned:
                if not site.serves_files:
                    outcome[site.name] = await self._step(site.name, "settings", sup.retune(site))
            renewed = await asyncio.gather(*(self._renew(site, before[site.name]) for site in changes.renewed))
            outcome.update(renewed)
            # A change that failed is not taken as made: the next reload plans it again.
            failed = {name for name, how in outcome.items() if how.startswith(("not applied", "failed"))}
            kept = [before[s.name] for s in new.sites if s.name in failed and s.name in before]
            sites = [s for s in new.sites if s.name not in failed] + kept
            sites += [before[name] for name in changes.removed if name in failed]
            self.config = replace(new, sites=tuple(sites))
            await self._deployer.deploy_missing()  # sites added with a source and no release yet
            switched = {s.name for s in changes.added} & set(changes.removed)  # files to container, or back
            added = [s.name for s in changes.added]
            removed = [name for name in changes.removed if name not in switched]
            report: dict[str, Any] = {
                "added": added,
                "removed": removed,
                "changed": {name: how for name, how in outcome.items() if name not in added and name not in removed},
                "failed": {name: outcome[name] for name in sorted(failed)},
            }
            if failed:
                log.error("reload: not applied to %s", ", ".join(sorted(failed)))
            log.info("reloaded: %s", report)
            return report

    async def _remove(self, name: str, replica_of: str) -> None:
        if name in self._supervisor.sites:  # a files site has nothing running
            await self._supervisor.remove_site(name)
            if not replica_of:  # (a second instance's file is still read by its site's route: see reload)
                await self._router.forget(name)

    @staticmethod
    async def _step(name: str, done: str, work: Awaitable[None]) -> str:
        try:
            await work
        except Exception as exc:
            log.exception("site %s: reload step failed", name)
            return f"failed: {exc!r}"
        return done

    async def reload_logged(self) -> None:
        """A reload whose outcome only the log hears of (SIGHUP)."""
        try:
            await self.reload()
        except (ConfigError, ReloadRefused) as exc:
            log.error("reload refused, nothing changed: %s", exc)
        except Exception:
            log.exception("reload failed")

    async def _renew(self, new: SiteConfig, old: SiteConfig) -> tuple[str, str]:
        """A site whose container settings changed: swapped (or renewed at its next start); a new source is
        deployed as well (its old release serves until then)."""
        name, how = new.name, "files"
        if not new.serves_files:
            site = self._supervisor.sites[name]
            try:
                how = await self._supervisor.swapper.swap(site, lambda now: keep_release(now, new), "config")
            except SwapFailed as exc:
                if new.source is None or new.source == old.source:
                    log.error("site %s: %s", name, exc)
                    return name, f"not applied: {exc.reason}"
                how = "waits for its first release"
        if new.source is not None and new.source != old.source:
            self._deployer.deploy(name, lambda _: None).add_done_callback(retrieved)
            how += "; deploying its new source"
        return name, how


async def _reload(request: web.Request) -> web.Response:
    try:
        report = await request.app[RELOADER].reload()
    except (ConfigError, ReloadRefused) as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=400)
    return web.json_response({"ok": True, **report})


RELOADER = web.AppKey("reloader", Reloader)


def add_reload_route(app: web.Application, reloader: Reloader) -> None:
    app[RELOADER] = reloader
    app.router.add_post("/reload", _reload)
