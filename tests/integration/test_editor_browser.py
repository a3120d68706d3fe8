"""The editor's page in headless Chromium (Debian's, driven by Playwright with the system browser), through
`dialup up` and the real Caddy: the login link from `dialup editor-token` opens the editor, a file opens from the
tree, typing saves it (the state shows it, the file on disk has it), the preview frame shows it, the deploy button
makes it live (its progress ends in `live: rN`), and the site's own host then serves it.

With DIALUP_SCREENSHOT=PATH the test also writes a screenshot of the page there (docs/editor.png is made so)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, async_playwright, expect

from activator.editor.service import BUNDLE
from tests.integration.harness import Deployment, editor_table, until

CHROMIUM = "/usr/bin/chromium"
TYPED = "typed in the browser"  # (no tags: the HTML mode closes them itself)
WAIT_MS = 15_000


async def test_log_in_type_see_it_saved_in_the_preview_deploy_it_and_see_it_live(deploy: Any) -> None:
    if not BUNDLE.is_file():
        pytest.fail("the editor's page is not built: run scripts/build-editor.sh", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)", pytrace=False)
    d: Deployment = await deploy(
        [{"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}],
        start=False,
        builds={"source_roots": ["sources"]},
        editor=editor_table(),
    )
    (d.dir / "sources" / "blog").mkdir(parents=True)
    (d.dir / "sources" / "blog" / "index.html").write_text("<h1>hello</h1>\n")
    await d.start()

    async def deployed() -> bool:
        async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "blog.localhost"}) as r:
            return r.status == 200 and "hello" in await r.text()

    await until(deployed, 30, "the first release")
    made = await asyncio.to_thread(d.command, "editor-token", "blog")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith(f"http://editor.localhost:{d.http_port}/sites/blog/login?token="), link

    # Chromium resolves every *.localhost name to the loopback itself, where Caddy listens on the test's port:
    # the editor, the preview frame and the site are reached by their own names, as a user's browser would.
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(link)
            await expect(page.locator("#state")).to_have_text("connected", timeout=WAIT_MS)  # no file open yet
            # The preview frame shows the workspace (made from the source at startup) before any edit.
            preview = page.frame_locator("#preview").locator("body")
            await expect(preview).to_contain_text("hello", timeout=WAIT_MS)
            await page.get_by_text("index.html").click()
            await page.locator("#state[data-kind=saved]").wait_for(timeout=WAIT_MS)
            await page.locator(".cm-content").click()
            await page.keyboard.press("Control+End")
            await page.keyboard.type(TYPED)
            await page.locator("#state[data-kind=saving]").wait_for(timeout=WAIT_MS)
            await page.locator("#state[data-kind=saved]").wait_for(timeout=WAIT_MS)
            workspace = d.dir / "state" / "dev-workspaces" / "blog"
            assert (workspace / "index.html").read_text() == f"<h1>hello</h1>\n{TYPED}"
            # Typing on after the save: the cursor stayed where it was (the save's own change, pushed back to
            # the tab, does not reload the file under it).
            await page.keyboard.type(" and more")
            await page.locator("#state[data-kind=saving]").wait_for(timeout=WAIT_MS)
            await page.locator("#state[data-kind=saved]").wait_for(timeout=WAIT_MS)
            assert (workspace / "index.html").read_text() == f"<h1>hello</h1>\n{TYPED} and more"

            # The page reloads the preview after the acknowledged save.
            await expect(preview).to_contain_text(TYPED, timeout=WAIT_MS)

            # Production: not before a deploy; the deploy button makes it live.
            async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "blog.localhost"}) as r:
                assert await r.text() == "<h1>hello</h1>\n"
            await page.locator("#deploy").click()
            progress = page.locator("#progress")
            await expect(progress).to_have_text(re.compile(r"^(live|failed): "), timeout=60_000)
            assert (await progress.text_content() or "").startswith("live: "), await progress.text_content()
            await expect(progress).to_have_text("live: r2")  # the first release was r1
            await expect(page.locator("#deploy")).to_be_enabled(timeout=WAIT_MS)
            await _screenshot(page)

            # On a phone-sized screen: tree, file, preview and deploy stacked, all in
            # sight, nothing wider than the screen.
            phone = page
            await phone.set_viewport_size({"width": 390, "height": 844})
            await phone.reload()
            await phone.get_by_text("index.html").click()
            await expect(phone.locator(".cm-content")).to_contain_text(TYPED, timeout=WAIT_MS)
            for part in ("#tree", ".cm-content", "#preview", "#deploy", "#state"):
                box = await phone.locator(part).bounding_box()
                assert box is not None and box["width"] > 0 and box["x"] + box["width"] <= 390 + 1, (part, box)
                if part in ("#tree", "#preview"):  # stacked: each as wide as the screen, not squeezed side by side
                    assert box["width"] >= 300, (part, box)
            assert await phone.evaluate("() => document.documentElement.scrollWidth") <= 390

            # The site's own host, in a new page of the same browser.
            site = await browser.new_page(viewport={"width": 1280, "height": 800})
            await site.goto(f"http://blog.localhost:{d.http_port}/")
            await expect(site.locator("body")).to_contain_text(f"{TYPED} and more", timeout=WAIT_MS)
        finally:
            await browser.close()


async def _screenshot(page: Page) -> None:
    """The page as it is now, written to $DIALUP_SCREENSHOT if set (never into the repository otherwise)."""
    target = os.environ.get("DIALUP_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=target)
