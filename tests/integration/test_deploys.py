"""Deploys from source with real builds (BuildKit), real Caddy and real Docker: a static site published as files,
an app built into an image and swapped under traffic with no failed request, failed and timed-out builds that
change nothing live, the build queue, rollback, unchanged sources, and bad input."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import psutil
import zstandard

from tests.integration.harness import Deployment, until

BASE = "dialup-test-static:latest"  # busybox httpd serving /www on 8080 (tests/images/static)


def app_source(folder: Path, text: str, extra: str = "") -> None:
    """An app with its own Dockerfile, on the busybox test image: built in a second or so, offline."""
    (folder / "www").mkdir(parents=True, exist_ok=True)
    (folder / "www" / "index.html").write_text(text)
    (folder / "Dockerfile").write_text(f"FROM {BASE}\n{extra}COPY www /www\n")


async def get(d: Deployment, host: str, path: str = "/", **headers: str) -> tuple[int, str, dict[str, str]]:
    """One request; a zstd body (precompressed at deploy time) is decompressed here."""
    async with (
        aiohttp.ClientSession(auto_decompress=False) as s,
        s.get(d.url + path, headers={"Host": host, **headers}) as r,
    ):
        raw = await r.read()
        if r.headers.get("Content-Encoding") == "zstd":
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        return r.status, raw.decode(errors="replace"), {k.lower(): v for k, v in r.headers.items()}


async def releases(d: Deployment, site: str) -> list[dict[str, Any]]:
    return list(await d.admin_json(f"/sites/{site}/releases"))


async def live(d: Deployment, site: str) -> str | None:
    return next((r["id"] for r in await releases(d, site) if r["live"]), None)


async def event_times(d: Deployment) -> list[tuple[str, str, float]]:
    async with (
        aiosqlite.connect(d.dir / "state" / "system" / "dialup.db") as db,
        db.execute(
            "SELECT site, kind, ts FROM events WHERE kind IN ('build_started', 'build_done') ORDER BY id"
        ) as cur,
    ):
        return [(site, kind, ts) for site, kind, ts in await cur.fetchall()]


async def post_deploy(d: Deployment, site: str, body: bytes) -> list[dict[str, Any]]:
    connector = aiohttp.UnixConnector(path=str(d.admin_socket))
    async with (
        aiohttp.ClientSession(connector=connector) as s,
        s.post(f"http://localhost/sites/{site}/deploy", data=body, headers={"Content-Type": "application/gzip"}) as r,
    ):
        assert r.status == 200, await r.text()
        return [json.loads(line) for line in (await r.text()).splitlines()]


def tarball(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


async def test_a_static_site_from_source_is_published_as_files_then_redeployed_rolled_back_and_left_alone_unchanged(
    deploy: Any,
) -> None:
    d: Deployment = await deploy(
        [{"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}],
        start=False,
        builds={"source_roots": ["sources"], "keep_releases": 2},
    )
    src = d.dir / "sources" / "blog"
    src.mkdir(parents=True)
    (src / "index.html").write_text("<h1>first</h1>" + " words" * 200)
    await d.start()
    await until(lambda: live(d, "blog"), 30, "the first release to go live at startup")
    status, body, headers = await get(d, "blog.localhost", **{"Accept-Encoding": "zstd"})
    assert status == 200 and headers.get("content-encoding") == "zstd" and "etag" in headers
    assert headers.get("cache-control") == "no-cache" and body.startswith("<h1>first</h1>")
    assert int(headers["content-length"]) < 300  # 1,214 bytes of HTML, sent as its zstd copy
    status, plain, _ = await get(d, "blog.localhost", **{"Accept-Encoding": "identity"})
    assert plain == body
    assert d.container_names() == set()  # no container
    row = (await d.status())["blog"]
    assert row["state"] == "files" and row["memory_limit"] == 0 and row["release"] == "r1"
    assert (await d.admin_json("/status"))["budget"]["used"] == 0

    (src / "index.html").write_text("<h1>second</h1>")
    done = await asyncio.to_thread(d.command, "deploy", "blog")
    assert done.returncode == 0, done.stderr
    assert "live: r2" in done.stdout
    assert (await get(d, "blog.localhost"))[1] == "<h1>second</h1>"

    again = await asyncio.to_thread(d.command, "deploy", "blog")  # the same source: nothing is rebuilt
    assert again.returncode == 0 and "unchanged" in again.stdout and "live: r2" in again.stdout
    assert [r["id"] for r in await releases(d, "blog")] == ["r2", "r1"]

    back = await asyncio.to_thread(d.command, "rollback", "blog")
    assert back.returncode == 0, back.stderr
    assert (await get(d, "blog.localhost", **{"Accept-Encoding": "identity"}))[1].startswith("<h1>first</h1>")
    listed = json.loads((await asyncio.to_thread(d.command, "releases", "blog", "--json")).stdout)
    assert [(r["id"], r["live"]) for r in listed] == [("r2", False), ("r1", True)]
    kinds = [e["kind"] for e in await d.events("blog")]
    assert kinds.count("build_done") == 2 and kinds.count("deployed") == 2 and "rolled_back" in kinds

    reused = await asyncio.to_thread(d.command, "deploy", "blog")  # r2's source again: no rebuild
    assert reused.returncode == 0 and "reused release=r2" in reused.stdout and "live: r2" in reused.stdout
    (src / "index.html").write_text("<h1>third</h1>")
    third = await asyncio.to_thread(d.command, "deploy", "blog")
    assert third.returncode == 0 and "live: r3" in third.stdout
    listed = json.loads((await asyncio.to_thread(d.command, "releases", "blog", "--json")).stdout)
    assert [(r["id"], r["live"], r["removed"]) for r in listed] == [
        ("r3", True, False),
        ("r2", False, False),
        ("r1", False, True),
    ]  # keep_releases = 2
    assert not (d.dir / "state" / "user-sites" / "blog" / "releases" / "r1").exists()
    assert [e["kind"] for e in await d.events("blog")].count("build_done") == 3


async def test_an_app_is_swapped_under_steady_traffic_without_a_failed_request(deploy: Any) -> None:
    d: Deployment = await deploy(
        [{"name": "app", "hosts": ["app.localhost"], "source": "sources/app", "kind": "node", "port": 8080}],
        start=False,
        builds={"source_roots": ["sources"], "keep_releases": 1},
    )
    src = d.dir / "sources" / "app"
    app_source(src, "v1")
    await d.start()
    await until(lambda: live(d, "app"), 60, "the first release to be built at startup")
    assert (await get(d, "app.localhost"))[1] == "v1"  # a cold start of the built image
    await d.wait_routed("app")
    old = d.container("app").id

    # The new release's build prints the cgroup its step runs in: the one dialup bounds.
    app_source(src, "v2", extra=f'RUN ["/bin/busybox", "sh", "-c", "cat /proc/self/cgroup; echo {d.name}"]\n')
    seen: dict[str, int] = {}
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with aiohttp.ClientSession() as s:
            while not stop.is_set():
                try:
                    async with s.get(d.url, headers={"Host": "app.localhost"}) as r:
                        body = (await r.read()).decode()
                        if r.status != 200:
                            failures.append(f"{r.status} {body[:80]}")
                        seen[body] = seen.get(body, 0) + 1
                except aiohttp.ClientError as exc:
                    failures.append(repr(exc))

    clients = [asyncio.ensure_future(client()) for _ in range(4)]
    try:
        done = await asyncio.to_thread(d.command, "deploy", "app", "--output")
        assert done.returncode == 0, done.stdout + done.stderr
        await until(lambda: seen.get("v2", 0) >= 50, 10, "requests answered by the new release")
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cache detail=Total reclaimed space" in done.stdout  # the build cache trimmed to [builds] cache
    assert any(":/docker/buildkit/" in line for line in done.stdout.splitlines() if "cpu" in line), done.stdout
    assert failures == [], failures[:5]
    assert seen.get("v1", 0) > 0 and seen["v2"] >= 50
    # The new container took the site's names; the old one and its holder are gone; nothing staged is left.
    now = d.container("app")
    assert now.id != old and now.status == "running"
    assert d.holder("app").status == "running"

    # The old ones (named .old since the switch) finish what they serve, then go.
    wanted = {f"dialup-{d.name}-app", f"dialup-{d.name}-app.holder"}
    await until(lambda: d.container_names() == wanted, 15, "the old to go")
    assert (await d.status())["app"]["state"] == "running"

    # keep_releases = 1: the old release's image is gone, the new one's is there, labelled with its release.
    def tags() -> list[str]:
        return [t for i in d.client.images.list(filters={"label": f"dialup.deployment={d.name}"}) for t in i.tags]

    await until(lambda: tags() == [f"dialup-{d.name}-app:r2"], 15, "the old release's image to go")
    assert d.client.images.get(tags()[0]).labels["dialup.release"] == "r2"


async def test_failed_and_timed_out_builds_leave_the_live_release_serving_and_say_why(deploy: Any) -> None:
    d: Deployment = await deploy(
        [{"name": "app", "hosts": ["app.localhost"], "source": "sources/app", "kind": "node", "port": 8080}],
        start=False,
        builds={"source_roots": ["sources"], "timeout": "5s"},
    )
    src = d.dir / "sources" / "app"
    app_source(src, "good")
    await d.start()
    await until(lambda: live(d, "app"), 60, "the first release")
    assert (await get(d, "app.localhost"))[1] == "good"

    app_source(src, "bad", extra='RUN ["/bin/busybox", "sh", "-c", "echo no such step >&2; exit 3"]\n')
    failed = await asyncio.to_thread(d.command, "deploy", "app")
    assert failed.returncode == 1
    assert "the build failed" in failed.stderr and "no such step" in failed.stderr, failed.stderr
    assert "the live release keeps serving" in failed.stderr
    assert (await get(d, "app.localhost"))[1] == "good"

    app_source(src, "slow", extra=f'RUN ["/bin/busybox", "sh", "-c", "sleep 60; echo {d.name}"]\n')
    began = time.monotonic()
    slow = await asyncio.to_thread(d.command, "deploy", "app")
    assert slow.returncode == 1 and "past its timeout of 5s" in slow.stderr, slow.stderr
    assert time.monotonic() - began < 40  # stopped, not waited out ...

    def step_running() -> bool:
        return any(d.name in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))

    await until(lambda: not step_running(), 15, "the build's step to be stopped in the engine too")
    assert (await get(d, "app.localhost"))[1] == "good"
    assert await live(d, "app") == "r1"
    details = [e["detail"] for e in await d.events("app") if e["kind"] == "build_failed"]
    assert len(details) == 2 and "timeout" in details[1]
    # Builds ran in BuildKit's cgroup, bounded: a low CPU weight, [builds] cpus (1) and memory (1 GiB).
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup v2
        group = root / "docker" / "buildkit"
        assert (group / "cpu.max").read_text().split() == ["100000", "100000"]
        assert (group / "memory.max").read_text().strip() == str(1 << 30)
    else:
        cpu, memory = root / "cpu" / "docker" / "buildkit", root / "memory" / "docker" / "buildkit"
        assert (cpu / "cpu.shares").read_text().strip() == "128"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "100000"
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(1 << 30)


async def test_three_deploys_at_once_build_two_at_a_time(deploy: Any) -> None:
    sites = [
        {"name": f"s{i}", "hosts": [f"s{i}.localhost"], "source": f"sources/s{i}", "kind": "node", "port": 8080}
        for i in range(3)
    ]
    d: Deployment = await deploy(sites, start=False, builds={"source_roots": ["sources"], "parallel": 2})
    await d.start()  # no source folders yet: nothing is built at startup ...
    # ... once startup is over (its deploys of sources with no release run at its very end, after `up` answers).
    await until(lambda: "ready: " in d.log_path.read_text(), 30, "dialup up to finish starting")
    status, body, headers = await get(d, "s0.localhost")
    assert status == 503 and "it has not been deployed yet" in body and "retry-after" in headers
    for i in range(3):  # each its own sleeping step (BuildKit would run one step shared by all three once)
        step = f'RUN ["/bin/busybox", "sh", "-c", "sleep 2; echo {i} {d.name}"]\n'
        app_source(d.dir / "sources" / f"s{i}", f"site {i}", extra=step)
    runs = await asyncio.gather(*(asyncio.to_thread(d.command, "deploy", f"s{i}") for i in range(3)))
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert any("queued place=1" in r.stdout for r in runs), [r.stdout for r in runs]
    spans: dict[str, list[float]] = {}
    for site, kind, ts in await event_times(d):
        if kind in ("build_started", "build_done"):
            spans.setdefault(site, []).append(ts)
    intervals = [(v[-2], v[-1]) for v in spans.values()]
    assert len(intervals) == 3
    most = max(sum(1 for a, b in intervals if a <= t < b) for t, _ in intervals)
    assert most == 2, intervals
    for i in range(3):
        assert (await get(d, f"s{i}.localhost"))[1] == f"site {i}"


async def test_bad_sources_are_refused_with_a_clear_message(deploy: Any) -> None:
    d: Deployment = await deploy(
        [{"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}],
        start=False,
        builds={"source_roots": ["sources"]},
    )
    (d.dir / "sources" / "blog").mkdir(parents=True)
    (d.dir / "sources" / "blog" / "index.html").write_text("kept")
    await d.start()
    await until(lambda: live(d, "blog"), 30, "the first release")

    outside = await asyncio.to_thread(d.command, "deploy", "blog", "--from", "/etc")
    assert outside.returncode == 1 and "/etc is outside the allowed folders" in outside.stderr, outside.stderr

    garbage = await post_deploy(d, "blog", b"not a tarball")
    assert garbage[-1]["ok"] is False and "not a readable tar.gz" in garbage[-1]["reason"]
    escape = await post_deploy(d, "blog", tarball({"../escaped.html": b"x", "index.html": b"y"}))
    assert escape[-1]["ok"] is False and "refused" in escape[-1]["reason"], escape[-1]
    assert not (d.dir / "state" / "temp" / "escaped.html").exists()
    good = await post_deploy(d, "blog", tarball({"index.html": b"uploaded"}))
    assert good[-1] == {"step": "result", "ok": True, "release": "r2"}
    assert (await get(d, "blog.localhost"))[1] == "uploaded"

    bad = d.dir / "bad.toml"
    bad.write_text(d.config_path.read_text().replace('source = "sources/blog"', 'source = "/etc"'))
    command = [sys.executable, "-m", "activator.cli", "check", "-c", str(bad)]
    checked = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2 and "sites[0].source = '/etc': outside the allowed folders" in checked.stderr


NODE_APP = {
    "package.json": json.dumps(
        {"name": "hello", "version": "1.0.0", "private": True, "scripts": {"start": "node server.js"}}
    ),
    "package-lock.json": json.dumps(
        {"name": "hello", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
         "packages": {"": {"name": "hello", "version": "1.0.0"}}}
    ),
}  # fmt: skip
SERVER = """require("http").createServer((q, s) => s.end("%s on " + process.version)).listen(process.env.PORT);\n"""


async def test_a_node_app_is_built_by_its_recipe_and_an_update_reuses_its_dependency_layer(deploy: Any) -> None:
    from activator.builds.base_image import ensure_node_base

    base = await asyncio.to_thread(ensure_node_base, log=lambda line: None)  # made once per machine (minutes)
    d: Deployment = await deploy(
        [{"name": "hello", "hosts": ["hello.localhost"], "source": "sources/hello", "kind": "node"}],
        start=False,
        builds={"source_roots": ["sources"], "node_image": base},
    )
    src = d.dir / "sources" / "hello"
    src.mkdir(parents=True)
    for name, text in {**NODE_APP, "server.js": SERVER % "first"}.items():
        (src / name).write_text(text)
    await d.start()
    await until(lambda: live(d, "hello"), 120, "the node app's first release")
    status, body, _ = await get(d, "hello.localhost")
    assert status == 200 and body.startswith("first on v"), body

    (src / "server.js").write_text(SERVER % f"second {d.name}")  # no dependency changed (and new to the cache)
    done = await asyncio.to_thread(d.command, "deploy", "hello", "--output")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line.partition("| ")[2] for line in done.stdout.splitlines()]
    steps = {line.split()[0]: line for line in lines if line.startswith("#") and "[stage-0" in line}
    npm = next(step for step, line in steps.items() if "npm ci" in line)
    copy = next(step for step, line in steps.items() if "COPY . ." in line)
    assert f"{npm} CACHED" in lines, done.stdout  # the dependency layer was reused ...
    assert f"{copy} CACHED" not in lines  # ... and the changed source copied anew
    assert (await get(d, "hello.localhost"))[1].startswith(f"second {d.name} on v")
