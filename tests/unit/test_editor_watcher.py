"""Changes in a workspace as inotify reports them (real kernel, real folders): files written, made, moved and
deleted, in new folders too; nothing through a link to a folder outside; .git left out."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from activator.editor.watcher import MAX_DEPTH, Watcher
from tests.unit.folders_kit import nested


class Seen(list[str]):
    """The paths reported, and an event each time one is."""

    def __init__(self) -> None:
        super().__init__()
        self.more = asyncio.Event()

    def __call__(self, path: str) -> None:
        self.append(path)
        self.more.set()

    async def until(self, path: str, times: int = 1, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            while self.count(path) < times:
                self.more.clear()
                await self.more.wait()


async def test_changes_beneath_the_workspace_are_reported_and_nothing_through_links(tmp_path: Path) -> None:
    root, outside = tmp_path / "site", tmp_path / "outside"
    (root / ".git").mkdir(parents=True)
    outside.mkdir()
    os.symlink(outside, root / "out")
    seen = Seen()
    watcher = Watcher(root, seen)
    await watcher.start()
    try:
        (outside / "secret.txt").write_text("x")  # through the link: not watched
        (root / ".git" / "HEAD").write_text("ref")  # left out
        (root / "index.html").write_text("hello")
        await seen.until("index.html")
        (root / "pages").mkdir()
        await seen.until("pages")
        (root / "pages" / "about.html").write_text("about")  # in a folder made after the start
        await seen.until("pages/about.html")
        os.rename(root / "index.html", root / "home.html")
        await seen.until("home.html")
        (root / "home.html").unlink()
        await seen.until("home.html", times=2)  # moved in, then deleted
        assert not [p for p in seen if "secret" in p or p.startswith(".git") or p.startswith("out/")]
    finally:
        watcher.close()


async def test_folders_nested_without_end_are_watched_to_a_bound_and_start_does_not_fail(tmp_path: Path) -> None:
    root = tmp_path / "site"
    root.mkdir()
    with nested(root, 300):
        watcher = Watcher(root, Seen())
        try:
            await watcher.start()
            assert len(watcher._dirs) == MAX_DEPTH + 1  # the root and 64 levels beneath it
        finally:
            watcher.close()
