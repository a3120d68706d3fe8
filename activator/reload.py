"""`dialup reload` and SIGHUP: the config file read again and applied without a restart. Sites added are made
(and started if persistent), sites removed are drained and removed, changed sites get a new container beside
the old one (a swap, as a deploy's) or just their new settings. A file that does not load, or that changes
what only a restart can ([server], [caddy], [holder]), changes nothing and says why."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from activator.builds.deployer import Deployer
from activator.builds.releases import Releases, with_releases
from activator.config import Config, ConfigError, load_config
from activator.core.reloads import keep_release, plan, restart_needed
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
        """Apply the file as it is now. Raises ConfigError (a bad file) or ReloadRefused, having changed nothing."""
        async with self._lock:
            new = await asyncio.to_thread(load_config, Path(self.config.path))
            if (needs := restart_needed(self.config, new)) is not None:
                raise ReloadRefused(f"{new.path}: {needs} changed: that needs a restart of dialup up")
            changes = plan(self.config, new)
            sup = self._supervisor
            running = with_releases(new, await self._releases.live())
            log.info(
                "reloading %s: %d added, %d removed, %d changed", new.path, len(changes.added), len(changes.removed),
                len(changes.renewed) + len(changes.retuned),
            )  # fmt: skip
            # First what no request depends on: the new hosts (a removed site's are 404s now), budget, thresholds.
            sup.reconfigure(running)
            self._monitor.reconfigure(running)
            self._deployer.reconfigure(new)
            if self._metrics is not None:
                self._metrics.reconfigure(running)
            effective = {s.name: s for s in running.sites}
            for site in changes.added:
                if not site.serves_files:
                    await sup.add_site(effective[site.name])
            # Then Caddy: the routes of the sites added, without those removed (one config load).
            self._router.reconfigure(running)
            await sup.routes.load()
            for name in changes.removed:
                if name in sup.sites:
                    await sup.remove_site(name)
                    await self._router.forget(name)
            for site in changes.retuned:
                if not site.serves_files:
                    sup.retune(keep_release(sup.sites[site.name].config, site))
            outcomes = await asyncio.gather(*(self._renew(site.name, effective[site.name]) for site in changes.renewed))
            # A site whose new container did not take over keeps its old settings: the next reload tries again.
            failed = {name for name, how in outcomes if how.startswith("not applied")}
            before = {s.name: s for s in self.config.sites}
            self.config = replace(new, sites=tuple(before[s.name] if s.name in failed else s for s in new.sites))
            await self._deployer.deploy_missing()  # sites added with a source and no release yet
            report = {
                "added": [s.name for s in changes.added],
                "removed": list(changes.removed),
                "changed": {**{s.name: "settings" for s in changes.retuned}, **dict(outcomes)},
            }
            log.info("reloaded: %s", report)
            return report

    async def reload_logged(self) -> None:
        """A reload whose outcome only the log hears of (SIGHUP)."""
        try:
            await self.reload()
        except (ConfigError, ReloadRefused) as exc:
            log.error("reload refused, nothing changed: %s", exc)
        except Exception:
            log.exception("reload failed")

    async def _renew(self, name: str, config: Any) -> tuple[str, str]:
        if config.serves_files:
            return name, "files"
        sup = self._supervisor
        try:
            return name, await sup.swapper.swap(sup.sites[name], keep_release(sup.sites[name].config, config), "config")
        except SwapFailed as exc:
            log.error("site %s: %s", name, exc)
            return name, f"not applied: {exc.reason}"


async def _reload(request: web.Request) -> web.Response:
    try:
        report = await request.app[RELOADER_KEY].reload()
    except (ConfigError, ReloadRefused) as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=400)
    return web.json_response({"ok": True, **report})


RELOADER_KEY = web.AppKey("admin_reloader", Reloader)


def add_reload_route(app: web.Application, reloader: Reloader) -> None:
    app[RELOADER_KEY] = reloader
    app.router.add_post("/reload", _reload)
