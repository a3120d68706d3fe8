"""What a reload changes, as a table: sites added, removed, given a new container, or only new settings; and
the sections that need a restart."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from activator.config import BackupsConfig, CaddyConfig, Config, EditorConfig, ServerConfig
from activator.core.reloads import keep_release, plan, restart_needed
from activator.testing.rig import site_config

A, B = site_config("a"), site_config("b")
BASE = Config(path=Path("d.toml"), sites=(A, B))


@pytest.mark.parametrize(
    ("sites", "added", "removed", "renewed", "retuned"),
    [
        ((A, B), [], [], [], []),
        ((A,), [], ["b"], [], []),
        ((A, B, site_config("c")), ["c"], [], [], []),
        ((replace(A, image="a:2"), B), [], [], ["a"], []),
        ((replace(A, memory=96 << 20), B), [], [], ["a"], []),
        ((replace(A, env=(("K", "v"),)), B), [], [], ["a"], []),
        ((replace(A, idle_timeout=60.0), B), [], [], [], ["a"]),
        ((replace(A, hosts=("a.test", "www.a.test")), B), [], [], [], ["a"]),
        ((replace(A, image="", source=Path("/srv/sites/a")), B), ["a"], ["a"], [], []),  # now served as files
    ],
)
def test_the_plan(sites: tuple, added: list[str], removed: list[str], renewed: list[str], retuned: list[str]) -> None:
    p = plan(BASE, replace(BASE, sites=sites))
    assert [s.name for s in p.added] == added and list(p.removed) == removed
    assert [s.name for s in p.renewed] == renewed and [s.name for s in p.retuned] == retuned
    assert p.empty is not any((added, removed, renewed, retuned))


def test_a_change_of_a_section_read_only_at_startup_needs_a_restart() -> None:
    assert restart_needed(BASE, replace(BASE, sites=(A,))) is None
    moved = replace(BASE, server=replace(ServerConfig(), listen=replace(ServerConfig().listen, port=9999)))
    assert restart_needed(BASE, moved) == "[server] listen"
    assert (
        restart_needed(BASE, replace(BASE, caddy=replace(CaddyConfig(), http_listen=":8080"))) == "[caddy] http_listen"
    )
    editor = replace(BASE, editor=EditorConfig(host="editor.example.com"))
    assert restart_needed(BASE, editor) == "[editor] host"
    backups = replace(BASE, backups=BackupsConfig(repository=Path("/srv/backups")))
    assert restart_needed(BASE, backups) == "[backups] repository"


def test_a_site_built_from_source_keeps_its_release_across_a_change_of_settings() -> None:
    running = replace(A, image="", source=Path("/srv/a"), kind=A.kind, release="dialup-x-a:r3")
    assert keep_release(running, replace(running, release="", idle_timeout=9.0)).release == "dialup-x-a:r3"
    # A new source keeps the old release serving until a deploy from it; an image named instead replaces it.
    assert keep_release(running, replace(running, release="", source=Path("/srv/b"))).release == "dialup-x-a:r3"
    assert keep_release(running, replace(running, release="", source=None, image="a:9")).run_image == "a:9"
