"""The admin socket through a browser (`ssh -L`, for the panel): other pages in that browser cannot use it."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from activator.api import local_only


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        ("GET", {"Host": "localhost"}, 200),  # dialup's commands over the socket
        ("POST", {"Host": "localhost"}, 200),  # ... with no Origin
        ("GET", {"Host": "127.0.0.1:8080"}, 200),  # the panel through a forward
        ("POST", {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080"}, 200),  # its own form
        ("POST", {"Host": "localhost:8080", "Origin": "https://evil.example"}, 403),  # another page's form
        ("GET", {"Host": "evil.example:8080"}, 403),  # a name rebound to 127.0.0.1
        ("POST", {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}, 403),
    ],
)
async def test_local_names_only_and_no_change_from_another_origin(
    method: str, headers: dict[str, str], status: int
) -> None:
    app = web.Application(middlewares=[local_only])
    app.router.add_route("*", "/", ok)
    async with TestClient(TestServer(app)) as client:
        response = await client.request(method, "/", headers=headers)
        assert response.status == status
