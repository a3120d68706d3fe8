"""The panel in Debian's Chromium (Playwright with the system browser): the overview, sorted by a column, then a
site's charts. The admin socket is reached through a TCP forwarder, as `ssh -L 8080:/var/lib/dialup/system/
dialup.sock` would. With DIALUP_SCREENSHOT_DIR=DIR the test also writes panel.png and panel-site.png there (the
README's are made so)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from tests.integration.harness import site

CHROMIUM = "/usr/bin/chromium"


@contextlib.asynccontextmanager
async def forwarder(socket: Path) -> AsyncIterator[int]:
    """127.0.0.1:PORT to the unix socket, one connection each way."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_unix_connection(str(socket))
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_the_panel_in_a_browser_sorts_its_table_and_opens_a_sites_charts(deploy, images):
    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 - one stat, before anything starts
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)", pytrace=False)
    sites = [site(name, images["pyapp"], kind="static") for name in ("alpha", "beta", "gamma")]
    d = await deploy(sites, activity="log", monitor_interval="200ms", cost={"monthly": 25})
    async with aiohttp.ClientSession() as s:
        for name, n in (("alpha", 2), ("beta", 9), ("gamma", 5)):
            for _ in range(n):
                async with s.get(d.url, headers={"Host": f"{name}.test"}) as r:
                    assert r.status == 200
    shots = os.environ.get("DIALUP_SCREENSHOT_DIR")
    async with forwarder(d.admin_socket) as port, async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 700})
            await page.goto(f"http://127.0.0.1:{port}/panel")
            names = page.locator("#sites tbody tr td:first-child")
            await expect(names).to_have_count(3)
            await page.get_by_role("button", name="site").click()
            await expect(page.locator("#sites")).to_have_attribute("data-sorted-by", "0:up")
            assert await names.all_inner_texts() == ["alpha", "beta", "gamma"]
            await page.get_by_role("button", name="site").click()  # again: the other way
            assert await names.all_inner_texts() == ["gamma", "beta", "alpha"]
            await page.get_by_role("button", name="requests/min").click()  # by their numbers: 2, 5 and 9
            assert await names.all_inner_texts() == ["alpha", "gamma", "beta"]
            if shots:
                await page.screenshot(path=str(Path(shots) / "panel.png"), full_page=True)
            await page.get_by_role("link", name="beta").click()
            await expect(page.locator("svg.chart")).to_have_count(12)
            await expect(page.get_by_role("heading", name="Last week")).to_be_visible()
            if shots:
                await page.screenshot(path=str(Path(shots) / "panel-site.png"), full_page=True)
        finally:
            await browser.close()
