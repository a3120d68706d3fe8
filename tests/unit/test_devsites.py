"""Development sites from the config: one per site built from source by a recipe when [editor] host is set, on the
site's preview host, with the `development` kind's limits; a clash of its name or host is [editor]'s error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activator.config import ConfigError, load_config
from activator.editor import devserver
from activator.editor.folders import ensure_development, prepare_workspaces
from activator.model import Kind, MiB
from activator.proxy.render import render

EDITOR = '[editor]\nhost = "editor.example.com"\npreview_host = "{site}-dev.example.com"\nidle_timeout = "10m"\n'
BUILDS = '[builds]\nsource_roots = ["src"]\nnode_image = "base:1"\n'


def site(name: str, kind: str, source: bool = True) -> str:
    where = f'source = "src/{name}"' if source else 'image = "x:1"\nport = 80'
    return f'[[sites]]\nname = "{name}"\nhosts = ["{name}.example.com"]\nkind = "{kind}"\n{where}\n'


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    for name in ("app", "docs", "api", "app-dev"):
        (tmp_path / "src" / name).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "dialup.toml"
    path.write_text('[server]\nstate_dir = "state"\n' + text)
    return load_config(path)


def test_a_node_site_from_source_gets_a_development_site_on_its_preview_host(tmp_path: Path) -> None:
    config = load(tmp_path, EDITOR + BUILDS + site("app", "node") + site("docs", "static") + site("api", "node", False))
    dev = {s.name: s for s in config.sites}["app-dev"]
    assert [s.name for s in config.sites] == ["app", "docs", "api", "app-dev"]  # static and image sites: none
    assert (dev.develops, dev.hosts, dev.image, dev.port, dev.kind) == (
        "app", ("app-dev.example.com",), "base:1", 3000, Kind.DEVELOPMENT
    )  # fmt: skip
    assert (dev.memory_limit, dev.cpu_quota, dev.cpu_weight, dev.pids_limit) == (512 * MiB, 0.25, 1024, 50)
    app = {s.name: s for s in config.sites}["app"]
    assert dev.cpu_weight == 2 * app.cpu_weight  # while someone edits, it wins the CPU over the sites
    assert dev.idle_timeout == 600.0 and dev.source is None and not dev.serves_files
    state = config.server.state_dir
    assert dev.mounts == (
        (str(state / "dev-workspaces" / "app"), "/app", False),
        (str(state / "dev-cache" / "app"), "/app/node_modules", False),
        (str(devserver.TOOLS), "/dialup", True),
    )
    uid, gid = devserver.dev_user()
    assert dev.user == f"{uid}:{gid}" and uid != 0
    assert ("PORT", "3000") in dev.env and ("NODE_ENV", "development") in dev.env
    assert dev.command is not None and "/dialup/runner.mjs node" in dev.command[-1]


def test_no_development_sites_without_an_editor(tmp_path: Path) -> None:
    assert [s.name for s in load(tmp_path, BUILDS + site("app", "node")).sites] == ["app"]


@pytest.mark.parametrize(
    ("extra", "key", "value"),
    [
        (site("app-dev", "static"), "editor.preview_host", "app-dev"),  # its name is taken
        ('[[sites]]\nname = "x"\nhosts = ["app-dev.example.com"]\nimage = "x:1"\nport = 80\n', "editor.preview_host",
         "app-dev.example.com"),  # its host is taken
        ('[[sites]]\nname = "x"\nhosts = ["editor.example.com"]\nimage = "x:1"\nport = 80\n', "editor.host",
         "editor.example.com"),  # the editor's own host is a site's
        (site("docs", "static") + '[[sites]]\nname = "x"\nhosts = ["docs-dev.example.com"]\nimage = "x:1"\n'
         'port = 80\n', "editor.preview_host", "docs-dev.example.com"),  # a static site's preview host is taken
    ],
)  # fmt: skip
def test_a_development_site_that_clashes_is_the_editors_error(tmp_path: Path, extra: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, EDITOR + BUILDS + site("app", "node") + extra)
    assert caught.value.key == key and str(caught.value.value) == value, caught.value


def test_its_folders_are_made_for_its_user_from_the_sites_source(tmp_path: Path) -> None:
    config = load(tmp_path, EDITOR + BUILDS + site("app", "node"))
    (tmp_path / "src" / "app" / "lib").mkdir()
    (tmp_path / "src" / "app" / "lib" / "a.js").write_text("a")
    owner = (4242, 4243) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    ensure_development(config.sites[-1], tmp_path / "src" / "app", owner)
    workspace = config.server.state_dir / "dev-workspaces" / "app"
    assert (workspace / "lib" / "a.js").read_text() == "a"
    for path in (workspace, workspace / "lib", workspace / "lib" / "a.js", workspace / "node_modules",
                 config.server.state_dir / "dev-cache" / "app"):  # fmt: skip
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    (workspace / "lib" / "a.js").write_text("edited")
    ensure_development(config.sites[-1], tmp_path / "src" / "app", owner)  # there already: kept as it is
    assert (workspace / "lib" / "a.js").read_text() == "edited"


def test_a_workspace_is_made_without_the_sources_links(tmp_path: Path) -> None:
    # A static site's preview is its workspace's files served by Caddy, which follows links: none are copied.
    config = load(tmp_path, EDITOR + BUILDS + site("app", "node"))
    src = tmp_path / "src" / "app"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "index.html").write_text("x")
    os.symlink("../../../../state/system/dialup.db", src / "a" / "b" / "l")  # inside the source's parent
    os.symlink("index.html", src / "a" / "b" / "same")
    ensure_development(config.sites[-1], src, (os.getuid(), os.getgid()))
    workspace = config.server.state_dir / "dev-workspaces" / "app"
    assert (workspace / "a" / "b" / "index.html").read_text() == "x"
    assert not os.path.lexists(workspace / "a" / "b" / "l") and not os.path.lexists(workspace / "a" / "b" / "same")


def test_a_source_that_cannot_be_copied_leaves_the_other_sites_workspaces_made(tmp_path: Path) -> None:
    config = load(tmp_path, EDITOR + BUILDS + site("app", "node") + site("docs", "static"))
    with open(tmp_path / "src" / "app" / "huge.bin", "wb") as f:
        f.truncate(600 << 20)  # over the copy limit (sparse: nothing stored)
    prepare_workspaces(config)  # no raise: that site's workspace is left out, and said so
    state = config.server.state_dir
    assert (state / "dev-workspaces" / "docs").is_dir()
    assert not (state / "dev-workspaces" / "app").exists()
    assert not list((state / "dev-workspaces").glob(".*partial"))  # nothing half made left behind


def test_the_editors_routes_come_before_the_sites_so_a_wildcard_site_cannot_take_them(tmp_path: Path) -> None:
    wildcard = '[[sites]]\nname = "all"\nhosts = ["*.example.com"]\nimage = "x:1"\nport = 80\n'
    config = load(tmp_path, EDITOR + BUILDS + site("docs", "static") + wildcard)
    routes = render(config)["apps"]["http"]["servers"]["dialup"]["routes"]
    hosts = [r["match"][0]["host"] for r in routes if r.get("match")]
    assert hosts.index(["editor.example.com"]) < hosts.index(["*.example.com"])
    assert hosts.index(["docs-dev.example.com"]) < hosts.index(["*.example.com"])
