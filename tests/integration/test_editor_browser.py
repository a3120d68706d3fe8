"""The editor's page in headless Chromium (Debian's, driven by Playwright with the system browser): a login link
opens the editor, a file opens from the tree, typing saves it (the state shows it), and the file on disk has
what was typed. (The preview, the deploy and Caddy in front come with the rest of issue 13.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from activator.editor.access import Access
from activator.editor.service import BUNDLE, EditorSettings, make_editor_app
from tests.integration.harness import free_port

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
async def editor(tmp_path: Path) -> AsyncIterator[tuple[str, Access, Path]]:
    if not BUNDLE.is_file():
        pytest.fail("the editor's page is not built: run scripts/build-editor.sh", pytrace=False)
    root = tmp_path / "ws" / "blog"
    root.mkdir(parents=True)
    (root / "index.html").write_text("<h1>hello</h1>\n")
    port = free_port()
    async with aiosqlite.connect(tmp_path / "dialup.db") as db:
        access = Access(db)
        await access.open()
        settings = EditorSettings(
            f"127.0.0.1:{port}", tmp_path / "ws", frozenset({"blog"}), secure_cookie=False,
            preview="http://127.0.0.1:1/",
        )  # fmt: skip
        runner = web.AppRunner(make_editor_app(settings, access))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", access, root
        finally:
            await runner.cleanup()


async def test_log_in_open_a_file_type_and_see_it_saved(editor: tuple[str, Access, Path], tmp_path: Path) -> None:
    url, access, root = editor
    token = await access.issue_token("blog", time.time(), 600)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{url}/sites/blog/login?token={token}")
            await page.get_by_text("index.html").click()
            await page.locator("#state[data-kind=saved]").wait_for()
            await page.locator(".cm-content").click()
            await page.keyboard.press("Control+End")
            await page.keyboard.type("typed in the browser")  # (no tags: the HTML mode closes them itself)
            await page.locator("#state[data-kind=saving]").wait_for()
            await page.locator("#state[data-kind=saved]").wait_for(timeout=10_000)
            assert (root / "index.html").read_text() == "<h1>hello</h1>\ntyped in the browser"
            await page.screenshot(path=str(tmp_path / "editor.png"))
        finally:
            await browser.close()
