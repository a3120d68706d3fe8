"""Deploys on the admin API (unix socket, 0600): POST /sites/{name}/deploy (a tar.gz body, `?from=DIR`, or
the site's configured source), POST /sites/{name}/rollback, GET /sites/{name}/releases. Progress is streamed
as JSON lines; the last one says whether the new release is live."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from activator.builds.deployer import Deployer, DeployFailed, Progress, UnknownSite
from activator.builds.releases import Release, Releases

DEPLOYER = web.AppKey("deployer", Deployer)
RELEASES = web.AppKey("releases", Releases)
CHUNK = 1 << 16


def _known(request: web.Request) -> tuple[Deployer, str]:
    """The deployer and the site the path names; a site not in the config is a 404."""
    deployer, name = request.app[DEPLOYER], request.match_info["name"]
    try:
        deployer.site(name)
    except UnknownSite as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    return deployer, name


async def deploy(request: web.Request) -> web.StreamResponse:
    deployer, name = _known(request)
    archive = await _upload(request, deployer) if request.can_read_body else None
    folder = request.query.get("from")
    verbose = request.query.get("output") == "1"

    def start(say: Progress) -> asyncio.Task[Release]:
        try:
            return deployer.deploy(name, say, folder=Path(folder) if folder else None, archive=archive)
        except UnknownSite:  # removed by a reload since
            if archive is not None:
                archive.unlink(missing_ok=True)
            raise

    return await stream_progress(request, start, verbose)


async def rollback(request: web.Request) -> web.StreamResponse:
    deployer, name = _known(request)
    return await stream_progress(request, lambda say: deployer.rollback(name, say), verbose=False)


async def releases(request: web.Request) -> web.Response:
    rows = await request.app[RELEASES].of(request.match_info["name"])
    return web.json_response([r.as_json() for r in rows])


async def _upload(request: web.Request, deployer: Deployer) -> Path:
    """The body, to a file in the build scratch (bounded by [builds] max_upload: larger is a 413)."""
    limit = deployer.config.builds.max_upload
    fd, name = tempfile.mkstemp(prefix="upload-", suffix=".tar.gz", dir=deployer.scratch_dir())
    path, size = Path(name), 0
    out = await asyncio.to_thread(os.fdopen, fd, "wb")
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, True)
        raise
    finally:
        await asyncio.to_thread(out.close)
    return path


async def stream_progress(
    request: web.Request, start: Callable[[Progress], asyncio.Task[Release]], verbose: bool
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def say(event: dict[str, Any]) -> None:
        if verbose or event.get("step") != "output":
            lines.put_nowait(event)

    task = start(say)
    while True:
        getter = asyncio.ensure_future(lines.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await _send(response, getter.result())
            continue
        getter.cancel()
        break
    while not lines.empty():
        await _send(response, lines.get_nowait())
    try:
        release = task.result()
        await _send(response, {"step": "result", "ok": True, "release": release.id})
    except asyncio.CancelledError:
        await _send(response, {"step": "result", "ok": False, "reason": "dialup is shutting down", "tail": []})
    except DeployFailed as exc:
        await _send(response, {"step": "result", "ok": False, "reason": exc.reason, "tail": exc.tail})
    except Exception as exc:  # a bug: say so rather than cut the stream short
        await _send(response, {"step": "result", "ok": False, "reason": f"unexpected error: {exc!r}", "tail": []})
    await response.write_eof()
    return response


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    try:
        await response.write(orjson.dumps(event) + b"\n")
    except ConnectionError:
        pass  # the client went away; the deploy goes on


def add_routes(app: web.Application, deployer: Deployer, releases_store: Releases) -> None:
    app[DEPLOYER], app[RELEASES] = deployer, releases_store
    app.router.add_post("/sites/{name}/deploy", deploy)
    app.router.add_post("/sites/{name}/rollback", rollback)
    app.router.add_get("/sites/{name}/releases", releases)
