"""The editor's file operations on a workspace: every path attack of issue 13 refused, nothing outside the
workspace read or written, whole-file writes with conflict detection, atomic replacement, limits."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from activator.editor.workspace import Conflict, Limits, NotFound, PathRefused, Workspace, content_hash
from tests.unit.folders_kit import nested


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """What no operation may touch: a secret beside the workspace, and another site's workspace."""
    (tmp_path / "secret").write_text("secret")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "index.html").write_text("other site")
    return tmp_path


@pytest.fixture
def ws(outside: Path) -> Workspace:
    root = outside / "blog"
    (root / "src").mkdir(parents=True)
    (root / "index.html").write_text("hello")
    (root / "src" / "app.js").write_text("x()")
    return Workspace(root, Limits(file_size=1024, files=10, total=4096))


def untouched(outside: Path) -> bool:
    return (outside / "secret").read_text() == "secret" and (outside / "other" / "index.html").read_text() == (
        "other site"
    )


@pytest.mark.parametrize("path", ["../secret", "/etc/passwd", "a/../../secret", "nul\0byte", "back\\slash", "", "."])
def test_bad_paths_are_refused(ws: Workspace, outside: Path, path: str) -> None:
    with pytest.raises(PathRefused):
        ws.read(path)
    with pytest.raises(PathRefused):
        ws.write(path, b"pwned", None)
    assert untouched(outside)


def test_a_planted_link_to_a_file_outside_is_neither_read_nor_written_through(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret", ws.root / "leak")
    os.symlink("../other/index.html", ws.root / "neighbour")
    for name in ("leak", "neighbour"):
        with pytest.raises(PathRefused, match="a link"):
            ws.read(name)
        with pytest.raises(PathRefused, match="a link"):  # its current content cannot be read either
            ws.write(name, b"pwned", content_hash(b"secret"))
    assert untouched(outside)


def test_a_planted_link_to_a_folder_outside_cannot_carry_a_read_or_a_write(ws: Workspace, outside: Path) -> None:
    os.symlink("/etc", ws.root / "etc")
    os.symlink(outside / "other", ws.root / "src" / "other")
    with pytest.raises(PathRefused, match="not a folder"):
        ws.read("etc/passwd")
    with pytest.raises(PathRefused, match="not a folder"):
        ws.write("src/other/index.html", b"pwned", content_hash(b"other site"))
    with pytest.raises(PathRefused, match="not a folder"):
        ws.write("src/other/new.html", b"pwned", None)
    assert untouched(outside) and not (outside / "other" / "new.html").exists()


def test_a_rename_onto_a_link_replaces_the_link_not_its_target(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret", ws.root / "trap")
    with pytest.raises(PathRefused, match="exists already"):
        ws.rename("index.html", "trap")
    ws.delete("trap")  # the link itself goes, never what it points to
    ws.rename("index.html", "trap")
    assert (ws.root / "trap").read_text() == "hello" and not (ws.root / "trap").is_symlink()
    assert untouched(outside)


def test_a_link_swapped_in_for_a_file_between_writes_is_replaced_not_written_through(
    ws: Workspace, outside: Path
) -> None:
    _, version = ws.read("index.html")
    (ws.root / "index.html").unlink()
    os.symlink(outside / "secret", ws.root / "index.html")  # the dev container plants it
    with pytest.raises(PathRefused):
        ws.write("index.html", b"new", version)
    assert untouched(outside)


def test_the_tree_lists_links_as_links_and_never_enters_them(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "other", ws.root / "other")
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "HEAD").write_text("ref")
    entries = {e.path: e.kind for e in ws.tree()}
    assert entries == {"index.html": "file", "src": "dir", "src/app.js": "file", "other": "link"}


def test_writes_carry_the_version_they_edited_and_a_stale_one_gets_the_current_content(ws: Workspace) -> None:
    _, version = ws.read("index.html")
    new = ws.write("index.html", b"tab one", version)
    with pytest.raises(Conflict) as conflict:
        ws.write("index.html", b"tab two", version)  # edited the version before tab one's save
    assert conflict.value.current == b"tab one" and conflict.value.current_hash == new
    assert ws.read("index.html") == (b"tab one", new)
    with pytest.raises(Conflict):
        ws.write("index.html", b"x", None)  # "create" of a file that exists
    assert ws.write("pages/about.html", b"about", None) == content_hash(b"about")  # folders made as needed
    assert not [p for p in ws.root.rglob(".dialup-write-*")]  # no temporary file left


def test_git_and_node_modules_are_never_written(ws: Workspace) -> None:
    for path in (".git/config", "node_modules/x/index.js", "src/node_modules/y.js"):
        with pytest.raises(PathRefused, match="not written"):
            ws.write(path, b"x", None)


def test_limits(ws: Workspace) -> None:
    with pytest.raises(PathRefused, match="larger than"):
        ws.write("big.txt", b"x" * 2048, None)
    for i in range(8):
        ws.write(f"f{i}.txt", b"x", None)
    with pytest.raises(PathRefused, match="10 files"):
        ws.write("one-too-many.txt", b"x", None)


def test_missing_files(ws: Workspace) -> None:
    with pytest.raises(NotFound):
        ws.read("nope.html")
    with pytest.raises(NotFound):
        ws.delete("nope.html")


def test_room_is_counted_by_a_walk_at_most_every_recount_and_kept_by_own_writes_between(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    walks: list[int] = []
    tree = ws.tree
    monkeypatch.setattr(ws, "tree", lambda: walks.append(1) or tree())
    for i in range(8):  # 2 files there, 8 more: the limit of 10
        ws.write(f"f{i}.txt", b"x" * 100, None)
    with pytest.raises(PathRefused, match="has 10 files already"):
        ws.write("f8.txt", b"x", None)
    assert len(walks) == 1  # one walk, then the writes' own counts
    for i in range(8):  # another (the dev server) removes files and writes a large one
        (ws.root / f"f{i}.txt").unlink()
    (ws.root / "grown.bin").write_bytes(b"y" * 3900)
    with pytest.raises(PathRefused, match="has 10 files already"):
        ws.write("f8.txt", b"x", None)  # the count is not yet stale
    monkeypatch.setattr("activator.editor.workspace.RECOUNT", 0.0)
    with pytest.raises(PathRefused, match="would be larger"):
        ws.write("more.txt", b"z" * 200, None)  # counted again: 3 files, 3908 bytes
    assert len(walks) == 2


def test_what_is_written_belongs_to_the_owner_given(outside: Path) -> None:
    owner = (4242, 4243) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    ws = Workspace(outside / "other", owner=owner)
    ws.write("new/deep/file.txt", b"x", None)
    for path in ("new", "new/deep", "new/deep/file.txt"):
        info = (outside / "other" / path).stat()
        assert (info.st_uid, info.st_gid) == owner, path


def test_a_link_or_a_folder_holding_one_is_not_moved(ws: Workspace, outside: Path) -> None:
    # A link that points inside from where it is (a/b/l -> ../../index.html) would point outside from the top.
    (ws.root / "a" / "b").mkdir(parents=True)
    os.symlink("../../../secret", ws.root / "a" / "b" / "l")
    with pytest.raises(PathRefused, match="a link"):
        ws.rename("a/b/l", "l")
    with pytest.raises(PathRefused, match="holding links"):
        ws.rename("a", "z/y/a")
    assert (ws.root / "a" / "b" / "l").is_symlink() and not (ws.root / "l").exists() and untouched(outside)


def test_two_tabs_writing_the_same_version_at_once_one_wins_and_one_gets_the_conflict(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ws.read("index.html")[1]
    # Both writes are held between their version check and their rename, until both got there: without the
    # workspace's lock both would pass the check and both be acknowledged, one of them lost.
    both_checked = threading.Barrier(2, timeout=0.5)

    def held(growth: int, *, new_file: bool) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_checked.wait()

    monkeypatch.setattr(ws, "_check_room", held)
    results: list[str] = []

    def write(text: str) -> None:
        try:
            ws.write("index.html", text.encode(), base)
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=write, args=(f"tab {i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "ok"]


def test_a_write_over_a_huge_sparse_file_is_refused_without_reading_it(ws: Workspace) -> None:
    with open(ws.root / "big.bin", "wb") as f:
        f.truncate(50 << 30)  # 50 GiB claimed, nothing stored
    with pytest.raises(PathRefused, match="larger than"):
        ws.write("big.bin", b"x", "whatever")


def test_a_tree_too_deep_to_walk_is_refused_not_a_crash(ws: Workspace) -> None:
    with nested(ws.root, 1200), pytest.raises(PathRefused, match="nested too deeply"):
        ws.tree()
