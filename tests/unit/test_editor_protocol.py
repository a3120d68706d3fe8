"""The sync protocol over a real workspace folder: open, write with the version edited, conflicts between two
tabs with the current content, a resent write acknowledged again after a reconnect, refusals as answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activator.editor.protocol import ProtocolError, Session
from activator.editor.workspace import Workspace


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello")
    return tmp_path / "site"


async def test_two_tabs_edit_one_file_and_the_second_gets_a_conflict_with_the_current_content(root: Path) -> None:
    one, two = Session(Workspace(root)), Session(Workspace(root))
    opened = await one.handle({"id": 1, "op": "open", "path": "index.html"})
    assert opened == {
        "id": 1,
        "op": "open",
        "ok": True,
        "path": "index.html",
        "content": "hello",
        "hash": opened["hash"],
    }
    seen_by_two = (await two.handle({"id": 1, "op": "open", "path": "index.html"}))["hash"]
    saved = await one.handle({"id": 2, "op": "write", "path": "index.html", "content": "one", "base": opened["hash"]})
    assert saved["ok"] is True
    clash = await two.handle({"id": 2, "op": "write", "path": "index.html", "content": "two", "base": seen_by_two})
    assert clash["ok"] is False and clash["conflict"] is True and clash["current"] == "one"
    assert clash["current_hash"] == saved["hash"] and (root / "index.html").read_text() == "one"


async def test_a_write_resent_after_a_reconnect_is_acknowledged_again(root: Path) -> None:
    tab = Session(Workspace(root))
    base = (await tab.handle({"id": 1, "op": "open", "path": "index.html"}))["hash"]
    write = {"id": 2, "op": "write", "path": "index.html", "content": "saved once", "base": base}
    first = await tab.handle(write)
    again = await Session(Workspace(root)).handle(write)  # the answer was lost with the connection
    assert first["ok"] and again == first


async def test_refusals_are_answers(root: Path) -> None:
    tab = Session(Workspace(root))
    os.symlink("/etc/passwd", root / "passwd")
    for request, error in (
        ({"id": 1, "op": "open", "path": "../../etc/passwd"}, "refused"),
        ({"id": 2, "op": "open", "path": "passwd"}, "refused"),
        ({"id": 3, "op": "open", "path": "missing.html"}, "not found"),
        ({"id": 4, "op": "write", "path": "index.html", "content": 3, "base": "x"}, "refused: content must be"),
        ({"id": 5, "op": "chmod", "path": "index.html"}, "unknown op"),
    ):
        answer = await tab.handle(request)
        assert answer["ok"] is False and error in answer["error"], answer
    with pytest.raises(ProtocolError):
        await tab.handle(["not", "a", "request"])


async def test_create_rename_delete_and_list(root: Path) -> None:
    tab = Session(Workspace(root))
    assert (await tab.handle({"id": 1, "op": "create", "path": "css/site.css", "content": "a{}"}))["ok"]
    assert (await tab.handle({"id": 2, "op": "rename", "path": "css/site.css", "to": "css/main.css"}))["ok"]
    listed = await tab.handle({"id": 3, "op": "list"})
    assert {e["path"] for e in listed["entries"]} == {"index.html", "css", "css/main.css"}
    assert (await tab.handle({"id": 4, "op": "delete", "path": "css/main.css"}))["ok"]
    assert not (root / "css" / "main.css").exists()
