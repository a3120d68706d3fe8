"""The edge listener's limits: what Caddy lets through warm, the activator takes cold; what it refuses is one
log line; request bodies pass through as they came."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from activator.edge import BadRequestsInOneLine, server_limits
from activator.proxy.sysctl import migrate_connections

HEADER_BYTES = 16 * 1024


@pytest.fixture
async def edge_port() -> AsyncIterator[int]:
    """A listener with the edge's limits that answers with the size of what it read."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{len(request.headers.get('Cookie', ''))} {len(body)}")

    app = web.Application()
    app.router.add_route("*", "/", echo)
    runner = web.AppRunner(app, access_log=None, **server_limits(HEADER_BYTES))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    logging.getLogger("aiohttp.server").addFilter(BadRequestsInOneLine())
    yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_a_16k_cookie_is_taken_and_a_gzip_body_passes_undecoded(edge_port: int) -> None:
    cookie = b"c=" + b"x" * (HEADER_BYTES - 100)
    body = b"\x1f\x8b" + b"gzip bytes as sent"  # declared gzip: the app decodes it, not the activator
    head = b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip\r\n"
    request = head + b"Cookie: " + cookie + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    answer = await _raw(edge_port, request)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"%d %d" % (len(cookie), len(body)))


async def test_a_request_it_cannot_take_is_one_warning_line(edge_port: int, caplog: pytest.LogCaptureFixture) -> None:
    huge = b"x" * (HEADER_BYTES + 8 * 1024)
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        answer = await _raw(edge_port, b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + huge + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400") or answer.startswith(b"HTTP/1.1 400")
    (record,) = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert record.levelno == logging.WARNING and record.exc_info is None and "bad request refused" in record.message


def test_tcp_migrate_req_is_set_or_the_reason_it_is_not_said(tmp_path: Path) -> None:
    knob = tmp_path / "tcp_migrate_req"
    knob.write_text("0\n")
    assert migrate_connections(knob) == "on" and knob.read_text() == "1\n"
    assert migrate_connections(knob) == "on"  # already
    assert "Linux 5.14" in migrate_connections(tmp_path / "absent")
