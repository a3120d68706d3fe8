"""The pieces of a deploy that need no engine: snapshots and hashes of a source, the unpacking of an upload,
publishing a static release, the build queue, the recipes, and the [builds] config."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest
import zstandard

from activator.builds import publish, sources
from activator.builds.limits import bound_builds
from activator.builds.queue import BuildQueue
from activator.builds.recipes import NoRecipe, dockerfile
from activator.config import ConfigError, load_config
from activator.model import Kind

MiB = 1 << 20


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_hash_follows_content_names_and_modes_not_times_or_skipped_folders(tmp_path: Path) -> None:
    a = tree(tmp_path / "a", {"index.html": "hi", "js/app.js": "x()"})
    first = sources.content_hash(a)
    os.utime(a / "index.html", (1, 1))
    assert sources.content_hash(a) == first  # touched, not changed
    snap = tmp_path / "snap"
    tree(a, {".git/HEAD": "ref", "node_modules/x/index.js": "1"})
    sources.snapshot(a, snap, 10 * MiB)
    assert sources.content_hash(snap) == first  # version control and installed dependencies are left out
    (a / "js/app.js").write_text("y()")
    assert sources.content_hash(a) != first
    (a / "js/app.js").write_text("x()")
    (a / "js/app.js").chmod(0o755)
    assert sources.content_hash(a) != first


def test_a_snapshot_refuses_links_out_of_the_source_and_sources_too_large(tmp_path: Path) -> None:
    src = tree(tmp_path / "src", {"index.html": "hi"})
    os.symlink("index.html", src / "home.html")  # inside: kept as a link
    sources.snapshot(src, tmp_path / "ok", 10 * MiB)
    assert os.readlink(tmp_path / "ok" / "home.html") == "index.html"
    os.symlink("/etc/passwd", src / "passwd")
    with pytest.raises(sources.BadSource, match="passwd is a symlink to /etc/passwd, outside the source"):
        sources.snapshot(src, tmp_path / "bad", 10 * MiB)
    (src / "passwd").unlink()
    os.symlink("../../etc", src / "up")
    with pytest.raises(sources.BadSource, match="outside the source"):
        sources.snapshot(src, tmp_path / "bad2", 10 * MiB)
    (src / "up").unlink()
    with open(src / "big.bin", "wb") as sparse:  # 1 GiB that takes no room: refused before a byte is copied
        sparse.truncate(1 << 30)
    with pytest.raises(sources.BadSource, match="larger than the limit"):
        sources.snapshot(src, tmp_path / "big", 1024)
    assert not (tmp_path / "big" / "big.bin").exists()


def _tar(path: Path, members: list[tarfile.TarInfo], data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_member("../escape"), r"leads out of the archive's folder"),
        (_member("a/../../escape"), r"leads out of the archive's folder"),
        (_member("/etc/cron.d/x"), r"is an absolute path"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), r"not a file or a folder \(links are not taken\)"),
        (_member("link", tarfile.SYMTYPE, "inside"), r"links are not taken"),
        (_member("hard", tarfile.LNKTYPE, "../../etc/passwd"), r"links are not taken"),
        (_member("dev", tarfile.CHRTYPE), r"not a file or a folder"),
        (_member("fifo", tarfile.FIFOTYPE), r"not a file or a folder"),
        (_member("a\\b"), r"backslash"),
    ],
)
def test_an_upload_cannot_write_outside_its_folder(tmp_path: Path, member: tarfile.TarInfo, problem: str) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [member])
    with pytest.raises(sources.BadSource, match=problem):
        sources.unpack(archive, tmp_path / "out", 10 * MiB)
    assert not (tmp_path / "escape").exists()


def test_an_upload_cannot_lead_a_file_through_a_link_it_planted(tmp_path: Path) -> None:
    # The shape of CVE-2025-4517's archives: a link first, then a file written through it. Links are refused.
    archive = _tar(tmp_path / "a.tar.gz", [_member("d", tarfile.SYMTYPE, ".."), _member("d/pwned")])
    with pytest.raises(sources.BadSource, match="links are not taken"):
        sources.unpack(archive, tmp_path / "out", MiB)
    assert not (tmp_path / "pwned").exists()
    os.symlink(tmp_path, tmp_path / "out" / "planted")  # a link already there (not from the archive)
    archive = _tar(tmp_path / "b.tar.gz", [_member("planted/pwned2")])
    with pytest.raises(sources.BadSource, match="planted"):
        sources.unpack(archive, tmp_path / "out", MiB)
    assert not (tmp_path / "pwned2").exists()


def test_an_upload_with_a_file_twice_is_refused(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_member("index.html"), _member("index.html")])
    with pytest.raises(sources.BadSource, match="appears twice"):
        sources.unpack(archive, tmp_path / "out", MiB)


def test_an_upload_is_bounded_and_must_be_a_tarball(tmp_path: Path) -> None:
    big = _tar(tmp_path / "big.tar.gz", [_member("a.bin", size=4096)], b"x" * 4096)
    with pytest.raises(sources.BadSource, match="unpacks to more than"):
        sources.unpack(big, tmp_path / "out", 1024)
    many = _tar(tmp_path / "many.tar.gz", [_member(f"f{i}", size=0) for i in range(12)], b"")
    with pytest.MonkeyPatch.context() as patch, pytest.raises(sources.BadSource, match="more than 10 entries"):
        patch.setattr(sources, "MAX_FILES", 10)
        sources.unpack(many, tmp_path / "out3", MiB)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(sources.BadSource, match=r"not a readable tar\.gz"):
        sources.unpack(junk, tmp_path / "out2", MiB)
    sources.unpack(_tar(tmp_path / "ok.tar.gz", [_member("index.html")]), tmp_path / "ok", MiB)
    assert (tmp_path / "ok" / "index.html").read_bytes() == b"x"


def test_a_static_release_gets_smaller_gzip_and_zstd_copies_and_goes_live_by_one_rename(tmp_path: Path) -> None:
    text = "<p>hello</p>" * 100
    rel = tree(tmp_path / "site" / "releases" / "r1", {"index.html": text, "tiny.css": "a{}", "logo.png": text})
    done, saved = publish.precompress(rel)
    assert done == 1 and saved > 0
    assert gzip.decompress((rel / "index.html.gz").read_bytes()).decode() == text
    assert zstandard.ZstdDecompressor().decompress((rel / "index.html.zst").read_bytes()).decode() == text
    assert not (rel / "tiny.css.gz").exists() and not (rel / "logo.png.gz").exists()  # too small; not text
    assert (rel / "index.html").stat().st_mode & 0o777 == 0o644
    site = tmp_path / "site"
    assert publish.live_release(site) is None
    publish.go_live(site, "r1")
    assert publish.live_release(site) == "r1" and (site / "current" / "index.html").read_text() == text
    tree(site / "releases" / "r2", {"index.html": "two"})
    publish.go_live(site, "r2")
    assert (site / "current" / "index.html").read_text() == "two" and not (site / ".current.tmp").exists()


async def test_the_queue_builds_at_most_parallel_at_once_in_the_order_asked() -> None:
    queue = BuildQueue(2)
    order: list[int] = []
    places: dict[int, int] = {}
    gates = [asyncio.Event() for _ in range(4)]

    async def build(i: int) -> None:
        async with queue.slot(lambda place: places.__setitem__(i, place)):
            order.append(i)
            await gates[i].wait()

    tasks = [asyncio.ensure_future(build(i)) for i in range(4)]
    await asyncio.sleep(0)
    assert order == [0, 1] and places == {2: 1, 3: 2} and queue.waiting == 2
    gates[1].set()
    await asyncio.sleep(0.01)
    assert order == [0, 1, 2] and queue.building == 2
    tasks[3].cancel()  # one that gives up while waiting takes no slot
    await asyncio.sleep(0.01)
    gates[0].set()
    gates[2].set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 2] and queue.building == 0 and queue.most_at_once == 2


def test_recipes_by_kind(tmp_path: Path) -> None:
    src = tree(tmp_path / "app", {"package.json": "{}"})
    node = dockerfile(Kind.NODE, src, "node-base:1", 3000)
    assert node is not None and node.startswith("FROM node-base:1\n")
    # Dependencies in a layer of their own, before the rest of the source; only production ones at run time.
    assert (
        node.index("COPY package.json package-lock.json* ./") < node.index("npm ci --omit=dev") < node.index("COPY . .")
    )
    assert 'CMD ["npm", "start"]' in node and "PORT=3000" in node and "--mount=type=cache,target=/root/.npm" in node
    nxt = dockerfile(Kind.NEXT, src, "node-base:1", 3000)
    assert nxt is not None and ".next/standalone" in nxt and 'CMD ["node", "server.js"]' in nxt
    astro = dockerfile(Kind.ASTRO, src, "node-base:1", 3000)
    assert astro is not None and "dist/server/entry.mjs" in astro and (src / ".dialup-serve.mjs").exists()
    (src / "Dockerfile").write_text("FROM scratch\n")
    assert dockerfile(Kind.NODE, src, "node-base:1", 3000) is None  # its own Dockerfile: built as it is
    with pytest.raises(NoRecipe, match=r"needs a package\.json"):
        dockerfile(Kind.NODE, tree(tmp_path / "empty", {"index.js": ""}), "node-base:1", 3000)


def test_builds_config_and_sources(tmp_path: Path) -> None:
    path = tmp_path / "dialup.toml"
    path.write_text(
        '[builds]\nsource_roots = ["sites"]\nparallel = 3\ntimeout = "90s"\nkeep_releases = 5\n'
        '[[sites]]\nname = "blog"\nhosts = ["blog.test"]\nsource = "sites/blog"\n'
        '[[sites]]\nname = "app"\nhosts = ["app.test"]\nsource = "sites/app"\nkind = "node"\n'
    )
    config = load_config(path)
    blog, app = config.sites
    assert blog.serves_files and blog.source == tmp_path / "sites" / "blog" and not app.serves_files
    assert app.port == 3000 and app.run_image == ""  # built from source: no image until the first release
    assert config.container_sites == (app,)
    assert (config.builds.parallel, config.builds.timeout, config.builds.keep_releases) == (3, 90.0, 5)
    path.write_text('[[sites]]\nname = "blog"\nhosts = ["blog.test"]\nsource = "/etc"\n')
    with pytest.raises(ConfigError, match=r"sites\[0\].source = '/etc': outside the allowed folders"):
        load_config(path)
    path.write_text('[[sites]]\nname = "blog"\nhosts = ["blog.test"]\nport = 80\n')
    with pytest.raises(ConfigError, match=r"sites\[0\].image = \(missing\): is required"):
        load_config(path)


def test_builds_are_bounded_in_buildkits_cgroup_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    said = bound_builds(512 * MiB, 0.5, v1)
    assert (v1 / "cpu/docker/buildkit/cpu.shares").read_text() == "128"
    assert (v1 / "cpu/docker/buildkit/cpu.cfs_quota_us").read_text() == "50000"
    assert (v1 / "memory/docker/buildkit/memory.limit_in_bytes").read_text() == str(512 * MiB)
    assert said == "builds limited to 0.5 CPU (weight 128/1024) and 512 MiB"
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory")
    bound_builds(512 * MiB, 2.0, v2)
    assert (v2 / "docker/buildkit/cpu.max").read_text() == "200000 100000"
    assert (v2 / "docker/buildkit/cpu.weight").read_text() == "12"
    assert (v2 / "docker/buildkit/memory.max").read_text() == str(512 * MiB)


def test_a_file_swapped_for_a_symlink_during_the_copy_is_refused_not_followed(tmp_path: Path) -> None:
    # What the walk does once it has seen a regular file: open it beneath its directory without following a link.
    src = tree(tmp_path / "src", {"index.html": "hi"})
    (src / "index.html").unlink()
    os.symlink("/etc/passwd", src / "index.html")  # swapped after the listing
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(sources.BadSource, match=r"index\.html cannot be read"):
            sources._copy_file("index.html", fd, tmp_path / "out.html", Path("index.html"), MiB)
    finally:
        os.close(fd)
    assert not (tmp_path / "out.html").exists()


def test_a_source_reached_through_a_symlink_is_copied(tmp_path: Path) -> None:
    real = tree(tmp_path / "real", {"index.html": "hi"})
    os.symlink(real, tmp_path / "link")
    sources.snapshot(tmp_path / "link", tmp_path / "snap", MiB)
    assert (tmp_path / "snap" / "index.html").read_text() == "hi"


def test_the_storage_response_leaves_builds_under_way_alone(tmp_path: Path) -> None:
    from activator.tempfiles import clean_temp

    old = tree(tmp_path / "temp", {"stale.log": "x", "builds/build-blog-1/src/index.html": "from 2019"})
    for path in (old / "stale.log", old / "builds/build-blog-1/src/index.html"):
        os.utime(path, (1, 1))  # an upload's files keep their archive's times
    assert clean_temp(old, now=10 * 86400.0) == (1, 1)
    assert (old / "builds/build-blog-1/src/index.html").exists() and not (old / "stale.log").exists()


def test_bounds_that_cannot_be_written_raise_for_the_deploy_to_say_so(tmp_path: Path) -> None:
    (tmp_path / "not-a-cgroup-tree").write_text("")
    with pytest.raises(OSError):
        bound_builds(MiB, 1.0, tmp_path / "not-a-cgroup-tree")
