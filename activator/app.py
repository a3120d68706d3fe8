"""Everything wired in one place: resources set up through cleanup contexts, torn down in reverse, bounded."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from activator import statedir, statelock
from activator.admin import panel
from activator.admin.history import History
from activator.admin.recorder import Recorder, RecordingEvents
from activator.admin_client import editor_origin
from activator.api import ADMIN_BACKUPS, make_admin_app, status_body
from activator.backups.commands import live_images
from activator.backups.scheduler import Scheduler
from activator.backups.service import Backups, restic_for
from activator.builds.api import DEPLOYER, RELEASES
from activator.builds.api import add_routes as add_deploy_routes
from activator.builds.deployer import Deployer, Progress
from activator.builds.releases import Release, Releases, with_releases
from activator.clock import SystemClock
from activator.config import Config
from activator.core.history import Retention
from activator.edge import HTTP, SUPERVISOR, BadRequestsInOneLine, make_edge_app, server_limits
from activator.editor.access import Access
from activator.editor.development import Development
from activator.editor.folders import prepare_workspaces
from activator.editor.service import EditorSettings, make_editor_app
from activator.model import ActivitySource
from activator.monitor import Monitor, Snapshot
from activator.privatesocket import bind_private
from activator.proxy.accesslog import AccessLogListener, Entry
from activator.proxy.caddy import CaddyAdmin, CaddyRouter
from activator.proxy.guard import CaddyGuard
from activator.proxy.metrics import CaddyMetrics
from activator.proxy.process import CaddyProcess
from activator.proxy.sysctl import migrate_connections
from activator.readiness import HttpProber
from activator.reaper import Reaper
from activator.reload import RELOADER, Reloader, add_reload_route
from activator.runtime.cgroups import CgroupMemory
from activator.runtime.docker import DockerRuntime
from activator.store import Store
from activator.supervisor import Supervisor

log = logging.getLogger("dialup")

CONFIG = web.AppKey("config", Config)
BACKUPS = web.AppKey("backups", Scheduler)
PROBE_HTTP = web.AppKey("probe_http", aiohttp.ClientSession)  # readiness probes and looks after no answer
STORE = web.AppKey("store", Store)
RUNTIME = web.AppKey("runtime", DockerRuntime)
CADDY = web.AppKey("caddy", CaddyAdmin)
ROUTER = web.AppKey("router", CaddyRouter)
REAPER = web.AppKey("reaper", Reaper)
RECORDER = web.AppKey("recorder", Recorder)
MONITOR = web.AppKey("monitor", Monitor)
CGROUPS = web.AppKey("cgroups", CgroupMemory)
GUARD = web.AppKey("guard", CaddyGuard)
CADDY_METRICS = web.AppKey("caddy_metrics", CaddyMetrics)


TEARDOWN_LIMIT = 10.0  # seconds each resource gets to close

Context = Callable[[web.Application], AsyncIterator[None]]


def bounded(ctx: Context) -> Context:
    """A cleanup context whose teardown may take at most TEARDOWN_LIMIT seconds."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        gen = ctx(app)
        await anext(gen)
        yield
        try:
            async with asyncio.timeout(TEARDOWN_LIMIT):
                await anext(gen, None)
        except TimeoutError:
            log.error("%s did not close within %gs", ctx.__name__, TEARDOWN_LIMIT)

    run.__name__ = ctx.__name__
    return run


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE] = Store(app[CONFIG].server.db_path)
    await store.open()
    app[RELEASES] = Releases(store.db)
    await app[RELEASES].open()
    yield
    await store.close()


async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME] = DockerRuntime(app[CONFIG].server.name)
    await runtime.open()
    yield
    await runtime.close()


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    # One pool for forwarding; bodies pass through untouched (no decompression).
    connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
    app[HTTP] = aiohttp.ClientSession(connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    # Probes dial anew each time: a pooled connection to an app that is going away would answer for it.
    app[PROBE_HTTP] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
    yield
    await app[PROBE_HTTP].close()
    await app[HTTP].close()


async def caddy_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    admin = app[CADDY] = CaddyAdmin(config.caddy.admin)
    await admin.open()
    app[ROUTER] = CaddyRouter(admin, config)
    yield
    await admin.close()


async def supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    config, runtime = app[CONFIG], app[RUNTIME]
    cgroups = app[CGROUPS] = CgroupMemory()
    if config.uses_holders and await runtime.ensure_holder_image(config.holder):
        log.info("built the holder image %s from %s", config.holder.image, config.holder.busybox)

    async def measure(container_id: str) -> int | None:
        return await asyncio.to_thread(cgroups.usage, container_id)

    running = with_releases(config, await app[RELEASES].live())  # sites built from source run their live release
    supervisor = app[SUPERVISOR] = Supervisor(
        running,
        runtime,
        app[ROUTER],
        RecordingEvents(app[STORE], app[RECORDER]),
        SystemClock(),
        HttpProber(app[PROBE_HTTP]),
        measure,
    )
    runtime.watch(supervisor.on_container_event)
    await asyncio.to_thread(prepare_workspaces, config)  # before development containers (binding them) are made
    await supervisor.adopt()
    yield
    await supervisor.close()


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """Per-site history in the event log's database (activator/admin/): written every 10 s from go-live, the
    minute under way written at the end."""
    keep = app[CONFIG].history
    history = History(app[STORE].db, Retention(minutes=int(keep.minutes), hours=int(keep.hours)))
    await history.open()
    recorder = app[RECORDER] = Recorder(history, time.time)
    yield
    await recorder.close()


async def accesslog_ctx(app: web.Application) -> AsyncIterator[None]:
    if app[CONFIG].server.activity is not ActivitySource.LOG:
        yield
        return
    # Up before Caddy's config is loaded: Caddy 2.6 dials its log writer when it loads.
    supervisor, recorder = app[SUPERVISOR], app[RECORDER]

    def record(entry: Entry) -> None:  # the history's: requests, their status and duration
        if (site := supervisor.site_name(entry.host)) is not None:
            recorder.request(site, entry.ts, entry.status, entry.duration)

    listener = AccessLogListener(app[CONFIG].server.access_log_listen, supervisor.on_request, (record,))
    await listener.start()
    yield
    await listener.close()


async def caddy_metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    # Activity from Caddy's per-host request counters, read by the reaper every tick.
    config, supervisor = app[CONFIG], app[SUPERVISOR]
    if config.server.activity is ActivitySource.METRICS:
        recorder = app[RECORDER]

        def on_requests(site: str, count: int) -> None:
            supervisor.on_requests(site, count)
            recorder.counted(site, count)

        metrics = app[CADDY_METRICS] = CaddyMetrics(app[CADDY], config, supervisor.site_name, on_requests)
        app[ROUTER].before_change = metrics.poll  # a reload starts the counters from zero: read them first
    yield


async def guard_ctx(app: web.Application) -> AsyncIterator[None]:
    config, supervisor = app[CONFIG], app[SUPERVISOR]
    process = CaddyProcess(config) if config.caddy.manage else None
    guard = app[GUARD] = CaddyGuard(app[CADDY], process, supervisor.routes, supervisor.lifecycle.record, SystemClock())
    yield
    await guard.close()


async def reaper_ctx(app: web.Application) -> AsyncIterator[None]:
    poll = app[CADDY_METRICS].poll if CADDY_METRICS in app else None
    reaper = app[REAPER] = Reaper(app[SUPERVISOR], app[CONFIG].server.reaper_interval, poll)
    yield
    await reaper.loop.close()


async def monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor = app[MONITOR] = Monitor(app[CONFIG], app[SUPERVISOR], app[RUNTIME], app[CGROUPS])
    supervisor, recorder = app[SUPERVISOR], app[RECORDER]

    def record(snapshot: Snapshot, seconds: float) -> None:  # the history's: memory, and each site's state
        sites = supervisor.sites
        limits = {name: site.config.memory_limit for name, site in sites.items()}
        failing = {name: supervisor.lifecycle.failing(site) for name, site in sites.items()}
        recorder.observe(snapshot.memory_used, limits, failing, seconds)

    monitor.observers.append(record)
    yield
    await monitor.close()


async def deployer_ctx(app: web.Application) -> AsyncIterator[None]:
    deployer = app[DEPLOYER] = Deployer(
        app[CONFIG], app[RELEASES], app[STORE], app[SUPERVISOR], app[RUNTIME].remove_image
    )
    await asyncio.to_thread(deployer.clear_scratch)
    yield
    await deployer.close()


async def backups_ctx(app: web.Application) -> AsyncIterator[None]:
    """Scheduled backups (when [backups] is set): started at go-live, in the background."""
    if not app[CONFIG].backups.enabled:
        yield
        return
    deployer, releases = app[DEPLOYER], app[RELEASES]
    backups = Backups(
        lambda: deployer.config, restic_for(app[CONFIG]), app[STORE], lambda: live_images(deployer.config, releases)
    )
    app[BACKUPS] = Scheduler(backups, ready=lambda: not deployer.doing)  # not while releases are being made
    app[MONITOR].storage_responses.append(backups.trim)  # retention applied before the disk fills
    yield
    await app[BACKUPS].close()


async def reloader_ctx(app: web.Application) -> AsyncIterator[None]:
    metrics = app[CADDY_METRICS] if CADDY_METRICS in app else None
    app[RELOADER] = Reloader(
        app[CONFIG], app[SUPERVISOR], app[ROUTER], app[DEPLOYER], app[MONITOR], app[RELEASES], metrics
    )
    yield


def editor_settings(config: Config) -> EditorSettings:
    return EditorSettings(
        host=editor_origin(config).partition("://")[2],
        workspaces=config.server.workspaces_dir,
        sites=frozenset(s.name for s in config.sites if not s.develops),
        developed=frozenset(s.develops for s in config.sites if s.develops),
        session_ttl=config.editor.session_ttl,
        secure_cookie=config.caddy.automatic_https,
        preview=editor_origin(config).replace(config.editor.host, config.editor.preview_host) + "/",
        sources={s.name: s.source for s in config.sites if s.source is not None},
    )


async def editor_ctx(app: web.Application) -> AsyncIterator[None]:
    """The editor (when [editor] host is set), on its own listener behind Caddy's editor route."""
    config = app[CONFIG]
    if not config.editor.enabled:
        yield
        return
    access = Access(app[STORE].db)
    await access.open()
    deployer = app[DEPLOYER]

    def deploy_from(site: str, say: Progress, folder: Path) -> asyncio.Task[Release]:
        return deployer.deploy(site, say, folder=folder)

    reloader = app[RELOADER]
    made: list[tuple[Config, EditorSettings]] = []

    def settings() -> EditorSettings:
        """The settings for the config as it runs now (a reload adds and removes sites), made once per config."""
        now = reloader.config
        if not made or made[0][0] is not now:
            made[:] = [(now, editor_settings(now))]
        return made[0][1]

    development = Development(app[SUPERVISOR])
    runner = web.AppRunner(make_editor_app(settings, access, deploy_from, development=development), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.editor.listen.host, config.editor.listen.port).start()
    yield
    await runner.cleanup()
    await development.close()


async def admin_ctx(app: web.Application) -> AsyncIterator[None]:
    admin = make_admin_app(app[SUPERVISOR], app[STORE], app[MONITOR], app[GUARD])
    if BACKUPS in app:
        admin[ADMIN_BACKUPS] = app[BACKUPS]
    add_deploy_routes(admin, app[DEPLOYER], app[RELEASES])
    add_reload_route(admin, app[RELOADER])
    store, deployer = app[STORE], app[DEPLOYER]
    recorder = app[RECORDER]
    admin.add_routes(panel.routes(status_body, lambda: store.db, lambda: deployer.config, recorder.pending))
    runner = web.AppRunner(admin, access_log=None)
    await runner.setup()
    await web.SockSite(runner, bind_private(app[CONFIG].server.admin_socket)).start()  # 0600 from the start
    yield
    await runner.cleanup()


def build_app(config: Config) -> web.Application:
    app = make_edge_app()
    app[CONFIG] = config
    app.cleanup_ctx.extend(
        bounded(c)
        for c in (
            store_ctx,
            runtime_ctx,
            http_ctx,
            caddy_ctx,
            history_ctx,
            supervisor_ctx,
            guard_ctx,
            accesslog_ctx,
            caddy_metrics_ctx,
            reaper_ctx,
            monitor_ctx,
            deployer_ctx,
            backups_ctx,
            reloader_ctx,
            editor_ctx,
            admin_ctx,
        )
    )
    return app


class Server:
    """`dialup up`, in named phases (as uvicorn's Server names its own): set up (every resource, through the
    app's cleanup contexts, and the fallback listener), go live (Caddy gets the routes, persistent sites
    start, the reaper and the monitor tick), serve until SIGINT or SIGTERM, shut down (in reverse, bounded).
    Caddy and the running containers are left running: a restart of the activator interrupts nothing."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app = build_app(config)
        self._reloads: set[asyncio.Task[None]] = set()
        limits = server_limits(config.caddy.max_header_bytes)
        self.runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=TEARDOWN_LIMIT, **limits
        )
        logging.getLogger("aiohttp.server").addFilter(BadRequestsInOneLine())

    async def setup(self) -> None:
        await self.runner.setup()
        listen = self.config.server.listen
        await web.TCPSite(self.runner, listen.host, listen.port, backlog=1024).start()

    async def go_live(self) -> None:
        guard, supervisor = self.app[GUARD], self.app[SUPERVISOR]
        if self.config.caddy.migrate_connections:  # before Caddy's first reload
            guard.migrate = await asyncio.to_thread(migrate_connections)
        else:
            guard.migrate = "off: caddy.migrate_connections = false"
        # Caddy gets routes only once the activator it falls back to is listening; a config that is already
        # right (a restarted activator's) is left alone.
        await guard.ensure()
        await supervisor.routes.load()
        supervisor.routes.start()
        guard.start()
        supervisor.start_persistent()
        await self.app[DEPLOYER].deploy_missing()  # sites with a source and no release yet: built now
        self.app[REAPER].loop.start()
        self.app[MONITOR].start()
        self.app[RECORDER].loop.start()
        if BACKUPS in self.app:
            self.app[BACKUPS].start()
        log.info(
            "ready: %d sites, activator on %s, Caddy serving %s",
            len(self.config.sites),
            self.config.server.listen,
            self.config.caddy.http_listen,
        )

    def _reload_on_signal(self) -> None:
        """SIGHUP: the config file applied again (as `dialup reload`); a bad file is logged and changes nothing."""
        if RELOADER not in self.app:
            log.warning("SIGHUP before dialup was set up: ignored")
            return
        task = asyncio.ensure_future(self.app[RELOADER].reload_logged())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def shutdown(self) -> None:
        log.info("shutting down; Caddy and running sites keep serving")
        await self.runner.cleanup()

    async def serve(self) -> None:
        # Signals are ours from the start: a SIGTERM while setting up ends it cleanly once that step is done.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        try:
            await self.setup()
            if not stop.is_set():
                await self.go_live()
            await stop.wait()
        finally:
            await self.shutdown()


async def serve(config: Config) -> None:
    """`dialup up`: run until SIGINT or SIGTERM."""
    statedir.prepare(config.server)  # made 0700, or refused if another user owns it
    statelock.hold(config.server.system_dir)  # first: a second `dialup up` must change nothing
    await Server(config).serve()
