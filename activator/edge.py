"""The listener Caddy falls back to: find the site by Host, hold the request while it starts, forward it."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict, CIMultiDictProxy

from activator.errors import RateLimited, SiteUnavailable
from activator.metrics import EDGE_REQUESTS
from activator.supervisor import Supervisor
from activator.supervisor.site import Site

log = logging.getLogger(__name__)
T = TypeVar("T")

SUPERVISOR = web.AppKey("supervisor", Supervisor)
HTTP = web.AppKey("http", aiohttp.ClientSession)

# RFC 9110 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
WS_HANDSHAKE = frozenset(
    h.lower()
    for h in (
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
    )
)
# No total timeout: held and streamed responses may last; a dead upstream is caught at connect.
WS_MAX_MESSAGE = 16 * 1024 * 1024  # bytes of one WebSocket message relayed (larger: closed with 1009)
# Go's http server, Caddy's, reads up to MaxHeaderBytes plus this much before it refuses a request's headers.
GO_HEADER_SLACK = 4096
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)
# Sent again after the upstream closed the connection without answering (as Caddy retries only GETs then):
# a request with a body, or one that changes things, may have been half read or already acted on.
REPEATABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class _NoAnswer(Exception):
    """The forward failed before any response: refused, or closed without an answer."""

    def __init__(self, refused: bool) -> None:
        self.refused = refused


def unavailable(exc: SiteUnavailable) -> web.Response:
    """The answer a client gets: the short public phrase (the whole reason is in the event log and `status`)."""
    return web.Response(
        status=503,
        text=f"site {exc.site!r} is unavailable: {exc.public}\n",
        headers={"Retry-After": str(exc.retry_after), "Cache-Control": "no-store"},
    )


def too_many(exc: RateLimited) -> web.Response:
    return web.Response(
        status=429,
        text=f"site {exc.site!r} is over its rate limit of {exc.limit}\n",
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after))), "Cache-Control": "no-store"},
    )


def upstream_headers(request: web.Request, drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    headers = end_to_end(request.headers, drop)
    # Behind Caddy these are already set, and the app sees the same values cold as warm;
    # for a request that came straight here, describe this hop.
    headers.setdefault("X-Forwarded-For", request.remote or "")
    headers.setdefault("X-Forwarded-Proto", request.scheme)
    headers.setdefault("X-Forwarded-Host", request.host)
    return headers


def end_to_end(headers: CIMultiDictProxy[str], drop: frozenset[str] = frozenset()) -> CIMultiDict[str]:
    """The headers meant for the next hop: without hop-by-hop ones, nor those `Connection` names."""
    hop = HOP_BY_HOP | {t.strip().lower() for t in headers.get("Connection", "").split(",")} | drop
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in hop)


async def handle(request: web.Request) -> web.StreamResponse:
    supervisor = request.app[SUPERVISOR]
    site = supervisor.site_for_host(request.host)
    if site is None:
        EDGE_REQUESTS.labels("", "unknown_host").inc()
        return web.Response(status=404, text=f"unknown host {request.host!r}\n")
    name = site.name
    try:
        supervisor.admit(site)
    except RateLimited as exc:
        EDGE_REQUESTS.labels(name, "rate_limited").inc()
        return too_many(exc)
    try:
        response = await _forward_with_retry(request, supervisor, site)
    except SiteUnavailable as exc:
        EDGE_REQUESTS.labels(name, "unavailable").inc()
        return unavailable(exc)
    EDGE_REQUESTS.labels(name, "forwarded").inc()
    return response


async def _forward_with_retry(request: web.Request, supervisor: Supervisor, site: Site) -> web.StreamResponse:
    # No answer means the container may have gone since we last looked: a refused connection (plain network)
    # or one its holder's port accepted and reset (holder network). Look again (the site turns stopped if
    # it went), and send the request once more if nothing of it can have been acted on.
    for attempt in range(2):
        async with supervisor.lease(site) as lease:
            try:
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    return await _websocket(request, lease.port, lease.slots)
                return await _http(request, lease.port, lease.slots)
            except _NoAnswer as exc:
                await lease.no_answer()
                repeatable = exc.refused or (request.method in REPEATABLE and not request.body_exists)
                if attempt or not repeatable:
                    why = "its container refuses connections" if exc.refused else "it closed the connection unanswered"
                    raise SiteUnavailable(site.name, why) from None
    raise AssertionError("unreachable")


async def _connect(call: Awaitable[T]) -> T:
    """Await a connection to the upstream, turning each way it can fail before answering into _NoAnswer."""
    try:
        return await call
    except aiohttp.ClientConnectorError:
        raise _NoAnswer(refused=True) from None
    except aiohttp.ClientConnectionError:  # reset, closed, or a pooled connection found closing
        raise _NoAnswer(refused=False) from None


async def _http(request: web.Request, port: int, slots: asyncio.Semaphore) -> web.StreamResponse:
    http = request.app[HTTP]
    url = f"http://127.0.0.1:{port}{request.rel_url}"
    body = request.content if request.body_exists else None
    async with slots:  # held only until the response headers arrive
        upstream = await _connect(
            http.request(
                request.method,
                url,
                headers=upstream_headers(request),
                data=body,
                allow_redirects=False,
                timeout=FORWARD_TIMEOUT,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        )
    async with upstream:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=end_to_end(upstream.headers)
        )
        if upstream.content_length is not None and "Content-Length" in upstream.headers:
            response.content_length = upstream.content_length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def _websocket(request: web.Request, port: int, slots: asyncio.Semaphore) -> web.StreamResponse:
    http = request.app[HTTP]
    url = f"http://127.0.0.1:{port}{request.rel_url}"
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    try:
        async with slots:  # held only for the handshake
            upstream = await _connect(
                http.ws_connect(
                    url,
                    headers=upstream_headers(request, WS_HANDSHAKE),
                    protocols=protocols,
                    autoping=False,
                    max_msg_size=WS_MAX_MESSAGE,
                    timeout=aiohttp.ClientWSTimeout(ws_close=10),
                )
            )
    except aiohttp.WSServerHandshakeError as exc:
        return web.Response(status=exc.status, text=f"{exc.message}\n")
    async with upstream:
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), autoping=False, max_msg_size=WS_MAX_MESSAGE
        )
        await client.prepare(request)
        await asyncio.gather(_pump(client, upstream), _pump(upstream, client))
        return client


async def _pump(
    src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for msg in src:
        if dst.closed:
            break
        if msg.type is WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await dst.send_bytes(msg.data)
        elif msg.type is WSMsgType.PING:
            await dst.ping(msg.data)
        elif msg.type is WSMsgType.PONG:
            await dst.pong(msg.data)
    if not dst.closed:
        await dst.close(code=src.close_code or 1000)


def server_limits(max_header_bytes: int) -> dict[str, Any]:
    """The edge listener's parser limits: whatever Caddy lets through warm, the activator takes cold (a 16 KiB
    cookie, say); and bodies pass through as they came (a gzip upload stays gzip)."""
    line = max_header_bytes + GO_HEADER_SLACK
    return {"max_line_size": line, "max_field_size": line, "max_headers": 512, "auto_decompress": False}


class BadRequestsInOneLine(logging.Filter):
    """aiohttp logs a request it cannot parse (an oversized header, say) with a full traceback, at error level:
    any client could flood the log. One line at warning level says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args = "bad request refused (%d): %s", (exc.code, str(exc.message)[:200])
            record.exc_info, record.exc_text = None, None
        return True


def make_edge_app() -> web.Application:
    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
