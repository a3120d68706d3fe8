"""The editor's HTTP side, run by `dialup up` behind Caddy's `[editor] host`: a token link opens a session for one
site, and each editor tab talks the sync protocol over one WebSocket, told of changes made by others as they
happen; the page's deploy goes through the deploy path."""

from __future__ import annotations

import asyncio
import html
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from activator.builds.api import stream_progress
from activator.builds.deployer import Progress
from activator.builds.releases import Release
from activator.config_values import _NAME
from activator.editor.access import Access, origin_allowed
from activator.editor.development import Development
from activator.editor.devserver import dev_user
from activator.editor.folders import ensure_workspace
from activator.editor.protocol import MAX_MESSAGE, ProtocolError, Session
from activator.editor.watcher import Watcher
from activator.editor.workspace import Workspace

log = logging.getLogger("activator.editor")
UNAUTHORIZED = "unauthorized\n"  # every refusal says the same: nothing about why
SITE = _NAME  # a site's name, as the config allows it


CHANGES = frozenset({"write", "create", "rename", "delete"})  # the ops that change the workspace

# The deploy path of builds/: (site, progress, folder) -> the deploy's task.
Deploy = Callable[[str, Progress, Path], "asyncio.Task[Release]"]


@dataclass(frozen=True)
class EditorSettings:
    host: str  # the editor's host name, as browsers send it in Origin
    workspaces: Path  # state_dir/dev-workspaces
    sites: frozenset[str]
    session_ttl: float = 12 * 3600.0
    secure_cookie: bool = True  # False only for tests over plain HTTP
    preview: str = "https://{site}-dev.localhost/"  # each site's preview, as a browser reaches it
    sources: dict[str, Path] | None = None  # each site's source: a workspace is made from it when first opened
    developed: frozenset[str] = frozenset()  # the sites with a development container (the others' preview: files)
    owner: tuple[int, int] = field(default_factory=dev_user)  # of what is written (the dev containers' user)

    def preview_url(self, site: str) -> str:
        return self.preview.replace("{site}", site)


# The settings as they are now (a reload of the config adds and removes sites).
SETTINGS: web.AppKey[Callable[[], EditorSettings]] = web.AppKey("editor_settings")
ACCESS = web.AppKey("editor_access", Access)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("editor_clock")
DEVELOPMENT = web.AppKey("editor_development", Development)
WORKSPACES: web.AppKey[dict[str, Workspace]] = web.AppKey("editor_workspaces")  # writer: sync(), one per site
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("editor_sockets")  # writer: sync()
DEPLOY: web.AppKey[Deploy] = web.AppKey("editor_deploy")


def cookie_name(site: str) -> str:
    return f"dialup_editor_{site}"  # one per site: a session for one site is no session for another


def _site(request: web.Request) -> str:
    site = request.match_info["site"]
    if not SITE.match(site) or site not in request.app[SETTINGS]().sites:
        raise web.HTTPUnauthorized(text=UNAUTHORIZED)
    return site


async def login(request: web.Request) -> web.Response:
    """GET /sites/{site}/login?token=T: the token link `dialup editor-token` prints."""
    site, settings = _site(request), request.app[SETTINGS]()
    session = await request.app[ACCESS].login(
        site, request.query.get("token", ""), request.app[CLOCK](), settings.session_ttl
    )
    if session is None:
        raise web.HTTPUnauthorized(text=UNAUTHORIZED)
    response = web.HTTPSeeOther(f"/sites/{site}/")
    response.set_cookie(
        cookie_name(site), session, max_age=int(settings.session_ttl), path=f"/sites/{site}/",
        httponly=True, secure=settings.secure_cookie, samesite="Strict",
    )  # fmt: skip
    raise response


async def _authorized(request: web.Request, site: str) -> None:
    session = request.cookies.get(cookie_name(site), "")
    if not await request.app[ACCESS].session(session, site, request.app[CLOCK]()):
        raise web.HTTPUnauthorized(text=UNAUTHORIZED)


PAGE = Path(__file__).with_name("page.html")
BUNDLE = Path(__file__).with_name("static") / "editor.js"  # built at set-up (scripts/build-editor.sh)


async def page(request: web.Request) -> web.Response:
    """GET /sites/{site}/: the editor, for a session of this site."""
    site, settings = _site(request), request.app[SETTINGS]()
    await _authorized(request, site)
    preview = settings.preview_url(site)
    kind = "dev" if site in settings.developed else "files"
    text = (await asyncio.to_thread(PAGE.read_text)).replace("{site}", site).replace("{preview}", html.escape(preview))
    text = text.replace("{preview_kind}", kind)
    # Scripts and connections of the editor itself only (its settings are data attributes, not a script);
    # the preview is the one frame allowed.
    policy = f"default-src 'self'; style-src 'self' 'unsafe-inline'; frame-src {preview}"
    return web.Response(text=text, content_type="text/html", headers={"Content-Security-Policy": policy})


async def bundle(request: web.Request) -> web.FileResponse:
    if not await asyncio.to_thread(BUNDLE.is_file):
        raise web.HTTPServiceUnavailable(text="the editor's page is not built: run scripts/build-editor.sh\n")
    return web.FileResponse(BUNDLE, headers={"Cache-Control": "no-cache"})


async def _from_the_page(request: web.Request) -> tuple[str, EditorSettings, Path]:
    """A request that changes a workspace: the site's session, from the editor's own page (Origin), and the
    site's workspace."""
    site, settings = _site(request), request.app[SETTINGS]()
    await _authorized(request, site)
    if not origin_allowed(request.headers.get("Origin"), settings.host):
        raise web.HTTPUnauthorized(text=UNAUTHORIZED)
    return site, settings, await workspace_of(settings, site)


async def sync(request: web.Request) -> web.WebSocketResponse:
    """GET /sites/{site}/ws: the sync protocol, from the editor's own page only (Origin)."""
    site, settings, root = await _from_the_page(request)
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=30.0)
    await ws.prepare(request)
    # One Workspace per site, shared by its tabs: its lock makes a write's version check and its rename one step.
    session = Session(request.app[WORKSPACES].setdefault(site, Workspace(root, owner=settings.owner)))
    development = request.app.get(DEVELOPMENT)
    if development is not None:
        development.opened(site)
    pushes: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

    def changed(path: str) -> None:
        if not pushes.full():
            pushes.put_nowait(path)

    sockets = request.app[SOCKETS]
    sockets.add(ws)
    watcher: Watcher | None = None
    pusher = asyncio.ensure_future(_push(ws, pushes))
    try:
        watcher = Watcher(root, changed)
        await watcher.start()
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                answer = await session.handle(orjson.loads(message.data))
            except (ProtocolError, orjson.JSONDecodeError) as exc:
                answer = {"ok": False, "error": f"refused: {exc}"}
            if development is not None and answer.get("ok") and answer.get("op") in CHANGES:
                development.edited(site)
            await ws.send_str(orjson.dumps(answer).decode())
    finally:
        sockets.discard(ws)
        pusher.cancel()
        if watcher is not None:
            watcher.close()
    return ws


async def _close_sockets(app: web.Application) -> None:
    """At shutdown: the tabs are told (1001, going away) and reconnect to whatever comes next, rather than hold
    the shutdown for the server's grace period."""
    sockets = app[SOCKETS]
    open_now = [ws for ws in sockets]
    closing = [ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in open_now]
    await asyncio.gather(*closing, return_exceptions=True)


async def workspace_of(settings: EditorSettings, site: str) -> Path:
    """The site's workspace: made from its source the first time it is opened (a copy; the source is not
    edited in place), empty if it has none."""
    source = (settings.sources or {}).get(site)
    return await asyncio.to_thread(ensure_workspace, settings.workspaces / site, source, settings.owner)


async def deploy(request: web.Request) -> web.StreamResponse:
    """POST /sites/{site}/deploy: the workspace deployed through the deploy path (progress as JSON lines)."""
    site, _, root = await _from_the_page(request)
    return await stream_progress(request, lambda say: request.app[DEPLOY](site, say, root), verbose=False)


async def _push(ws: web.WebSocketResponse, pushes: asyncio.Queue[str]) -> None:
    while True:
        path = await pushes.get()
        await ws.send_str(orjson.dumps({"op": "changed", "path": path}).decode())


def make_editor_app(
    settings: EditorSettings | Callable[[], EditorSettings],
    access: Access,
    deploy_from: Deploy | None = None,
    clock: Callable[[], float] = time.time,
    development: Development | None = None,
) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings if callable(settings) else (lambda: settings)
    app[ACCESS], app[CLOCK] = access, clock
    app[WORKSPACES], app[SOCKETS] = {}, weakref.WeakSet()
    app.on_shutdown.append(_close_sockets)
    if development is not None:
        app[DEVELOPMENT] = development
    if deploy_from is not None:
        app[DEPLOY] = deploy_from
        app.router.add_post("/sites/{site}/deploy", deploy)
    app.router.add_get("/sites/{site}/login", login)
    app.router.add_get("/sites/{site}/", page)
    app.router.add_get("/static/editor.js", bundle)
    app.router.add_get("/sites/{site}/ws", sync)
    return app
