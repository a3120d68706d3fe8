"""Backups with the real restic, Docker, Caddy and `dialup up`: a running deployment backed up while its database
is written, then lost (containers, images, state directory, sources), restored into a new folder under another
deployment name on this machine, and every site answering as before; a corrupted repository found by the
verification; a backup killed midway leaving the repository usable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import docker

from activator.config import load_config
from tests.integration.harness import LABEL, Deployment, until

SERVER = 'require("http").createServer((q, s) => s.end("app from source")).listen(process.env.PORT);\n'
NODE_APP = {
    "package.json": json.dumps({"name": "app", "version": "1.0.0", "scripts": {"start": "node server.js"}}),
    "server.js": SERVER,
}


def backups_table(tmp_path: Path, **more: Any) -> dict[str, Any]:
    # Kept off the deployment's own folder, as a real repository is kept off the server (with the key).
    return {"repository": str(tmp_path / "repo"), "password_file": str(tmp_path / "backup.key"), **more}


async def body(d: Deployment, host: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
        return f"{r.status} {await r.text()}"


def dialup(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "activator.cli", *args, "-c", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


async def test_a_deployment_backed_up_lost_and_restored_under_another_name_answers_as_before(
    deploy: Any, docker_client: docker.DockerClient, images: dict[str, str], tmp_path: Path
) -> None:
    from activator.builds.base_image import ensure_node_base

    base = await asyncio.to_thread(ensure_node_base, log=lambda line: None)  # made once per machine (minutes)
    d: Deployment = await deploy([], start=False)
    image = f"dialup-backup-test-{d.name}:1"  # a site's own image: lost with the server, restored from the backup
    docker_client.images.get(images["static"]).tag(image)
    sites = [
        {"name": "img", "hosts": ["img.localhost"], "image": image, "port": 8080},
        {"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"},
        {"name": "app", "hosts": ["app.localhost"], "source": "sources/app", "kind": "node"},
    ]
    server = {
        **d.server,
        "builds": {"source_roots": ["sources"], "node_image": base},
        "backups": backups_table(tmp_path),
    }
    d.config_path.write_text(d.render(sites, **server))
    (d.dir / "sources" / "blog").mkdir(parents=True)
    (d.dir / "sources" / "blog" / "index.html").write_text("blog from source")
    (d.dir / "sources" / "app").mkdir()
    for name, text in NODE_APP.items():
        (d.dir / "sources" / "app" / name).write_text(text)
    d2: Deployment | None = None
    try:
        await d.start()

        async def all_up() -> bool:
            return [await body(d, f"{s}.localhost") for s in ("blog", "app")] == [
                "200 blog from source", "200 app from source"
            ]  # fmt: skip

        await until(all_up, 180, "the sites from source, first released")
        before = {s["name"]: await body(d, f"{s['name']}.localhost") for s in sites}
        assert before["img"].startswith("200 ")

        # The database written meanwhile (by another connection, as the activator does).
        writing = True

        async def write_events() -> int:
            n = 0
            async with aiosqlite.connect(d.dir / "state" / "system" / "dialup.db", timeout=30) as db:
                while writing:
                    await db.execute(
                        "INSERT INTO events (ts, site, kind, cause, detail) VALUES (?, 'test', 'test', 'test', ?)",
                        (time.time(), f"row {n}"),
                    )
                    await db.commit()
                    n += 1
                    await asyncio.sleep(0.005)
            return n

        # Moving to a bigger server: a verified backup of everything now, and a bundle saying how.
        writer = asyncio.ensure_future(write_events())
        bundle = tmp_path / "bundle"
        done = await asyncio.to_thread(
            dialup, d.config_path, "migrate", "--target-size", "large", "--bundle", str(bundle)
        )
        writing = False
        written = await writer
        assert done.returncode == 0, done.stdout + done.stderr
        assert "verified" in done.stderr and written > 0
        assert "memory budget of the sites       2150 MiB       4300 MiB" in done.stdout, done.stdout
        steps = (bundle / "STEPS.txt").read_text()
        made = json.loads((bundle / "snapshots.json").read_text())
        sites_snapshot = made["sites"]
        assert f"dialup restore {sites_snapshot[:8]} --target-dir" in steps and "--size large" in steps
        listing = json.loads((await asyncio.to_thread(dialup, d.config_path, "backups", "--json")).stdout)
        listed = {c: [r["id"] for r in listing["classes"][c]] for c in ("db", "sites", "config")}
        assert all(made[c][:8] in listed[c] for c in listed), listing  # (the schedule's first ones may be there too)
        assert listing["last_verified"] is not None

        # The server is lost: containers, the images it made and ran, its state directory, its sources.
        d.close()
        docker_client.images.remove(image, force=True)
        assert not docker_client.images.list(filters={"label": f"{LABEL}={d.name}"})
        assert not d.dir.exists()

        # A new deployment on this machine, another name, from the backups alone (and the key kept apart).
        d2 = await deploy([], start=False)
        d2.config_path.unlink()  # the restore writes the config
        done = await asyncio.to_thread(
            dialup, bundle / "restore.toml", "restore", sites_snapshot[:8], "--target-dir", str(d2.dir),
            "--name", d2.name, "--size", "large",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"dialup up -c {d2.dir / 'dialup.toml'}" in done.stdout
        for step in ("restored the sites snapshot", "placed the database", "loaded 2 images", "the 2 live releases"):
            assert step in done.stderr, done.stderr
        # What is this machine's own (the old one's ports are free again; its Caddy socket folder is gone).
        text = d2.config_path.read_text().replace(str(d.dir), str(d2.dir))
        d2.config_path.write_text(text)
        d2.http_port, d2.listen_port, d2.log_port = d.http_port, d.listen_port, d.log_port
        assert (d2.dir / "sources" / "app" / "server.js").read_text() == SERVER
        restored = load_config(d2.config_path)
        assert restored.budget.memory == 4300 << 20 and restored.builds.parallel == 4  # the large server's plan
        assert restored.server.state_dir == d2.dir / "state" and restored.server.name == d2.name
        await d2.start()
        after = {s["name"]: await body(d2, f"{s['name']}.localhost") for s in sites}
        assert after == before
        releases = json.loads((await asyncio.to_thread(dialup, d2.config_path, "releases", "app", "--json")).stdout)
        assert [r["id"] for r in releases if r["live"]] == ["r1"]  # its history came back, not a new build
        async with aiosqlite.connect(d2.dir / "state" / "system" / "dialup.db") as db:
            (ok,) = await (await db.execute("PRAGMA integrity_check")).fetchone()  # type: ignore[misc]
            (rows,) = await (await db.execute("SELECT COUNT(*) FROM events WHERE kind = 'test'")).fetchone()  # type: ignore[misc]
        assert ok == "ok" and 0 < rows <= written
    finally:
        if d2 is not None:
            d2.close()  # first: its containers run the images loaded below
        with_suppress(lambda: docker_client.images.remove(image, force=True))
        for made in docker_client.images.list(filters={"label": f"{LABEL}={d.name}"}):  # loaded by the restore
            with_suppress(lambda made=made: docker_client.images.remove(made.id, force=True))


def with_suppress(call: Any) -> None:
    try:
        call()
    except docker.errors.APIError:
        pass


async def test_a_corrupted_repository_is_found_and_a_killed_backup_leaves_it_usable(
    deploy: Any, tmp_path: Path
) -> None:
    d: Deployment = await deploy(
        [{"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"}],
        start=False,
        builds={"source_roots": ["sources"]},
        backups=backups_table(tmp_path, verify_data="100%"),
    )
    (d.dir / "sources" / "blog").mkdir(parents=True)
    for i in range(200):  # enough for a backup to be caught midway
        (d.dir / "sources" / "blog" / f"page{i}.html").write_bytes(os.urandom(64 * 1024))

    # Killed midway (the command and its restic): the next backup runs, and the repository checks clean.
    killed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "activator.cli", "backup", "--only", "sites", "-c", str(d.config_path),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await until(lambda: _restic_backing_up(tmp_path / "repo"), 60, "restic backing up")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        await killed.wait()
    done = await asyncio.to_thread(dialup, d.config_path, "backup", "--only", "sites")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stderr

    # A pack file damaged on disk: the verification (all data read back) says so, and the command fails.
    await asyncio.to_thread(_damage_largest_pack, tmp_path / "repo")
    done = await asyncio.to_thread(dialup, d.config_path, "backup", "--only", "config")
    assert done.returncode == 1
    assert "verify backup failed" in done.stderr, done.stderr
    events = [e for e in await d.events("(backups)") if e["kind"] == "backup_failed"]
    assert events and events[-1]["detail"].startswith("verify: restic check exited"), events


def _damage_largest_pack(repo: Path) -> None:
    packs = sorted((repo / "data").glob("*/*"), key=lambda p: p.stat().st_size)
    with open(packs[-1], "r+b") as f:
        f.seek(packs[-1].stat().st_size // 2)
        f.write(b"\0" * 4096)


async def _restic_backing_up(repo: Path) -> bool:
    return await asyncio.to_thread(_restic_running, repo)


def _restic_running(repo: Path) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"backup" in cmd and any(c.endswith(b"restic") for c in cmd) and str(repo).encode() in env:
            return True
    return False


async def test_dialup_up_backs_up_on_schedule_in_the_background_and_status_shows_it(
    deploy: Any, images: dict[str, str], tmp_path: Path
) -> None:
    d: Deployment = await deploy(
        [{"name": "img", "hosts": ["img.localhost"], "image": images["static"], "port": 8080}],
        backups=backups_table(tmp_path),
    )

    async def all_backed_up() -> dict[str, Any] | None:
        status = await d.admin_json("/status")
        classes = status.get("backups", {})
        done = all(classes.get(c, {}).get("last_success") for c in ("db", "sites", "config"))
        return status if done else None

    # Never backed up: every class is due at once (a missed backup is caught up at startup).
    status = await until(all_backed_up, 120, "the first scheduled backups")
    assert status["backups"]["db"]["next_run"] - status["backups"]["db"]["last_success"] == 6 * 3600
    assert (await body(d, "img.localhost")).startswith("200 ")  # the sites answer meanwhile
    shown = await asyncio.to_thread(dialup, d.config_path, "status")
    assert "backup db: last 20" in shown.stdout and "FAILING" not in shown.stdout, shown.stdout
    kinds = [e["kind"] for e in await d.events("(backups)")]
    assert kinds.count("backup_started") == 3 and kinds.count("backup_done") == 3, kinds

    async def checked() -> bool:  # the repository is checked at each start, after the catch-up
        return "backup_verified" in [e["kind"] for e in await d.events("(backups)")]

    await until(checked, 60, "the check at startup")


async def test_a_restore_in_place_puts_back_the_state_and_sources_and_keeps_what_was_there(
    deploy: Any, images: dict[str, str], tmp_path: Path
) -> None:
    d: Deployment = await deploy(
        [
            {"name": "blog", "hosts": ["blog.localhost"], "source": "sources/blog"},
            {"name": "img", "hosts": ["img.localhost"], "image": images["static"], "port": 8080},
        ],
        start=False,
        builds={"source_roots": ["sources"]},
        backups=backups_table(tmp_path),
    )
    source = d.dir / "sources" / "blog"
    source.mkdir(parents=True)
    (source / "index.html").write_text("as backed up")
    await d.start()

    async def shows(text: str) -> bool:
        return await body(d, "blog.localhost") == f"200 {text}"

    await until(lambda: shows("as backed up"), 30, "the first release")
    assert (await body(d, "img.localhost")).startswith("200 ")  # its container running
    done = await asyncio.to_thread(dialup, d.config_path, "backup", "--only", "sites")
    assert done.returncode == 0, done.stdout + done.stderr
    (source / "index.html").write_text("changed after the backup")
    (source / "new.html").write_text("new")
    deployed = await asyncio.to_thread(dialup, d.config_path, "deploy", "blog")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert await shows("changed after the backup")

    # Refused while dialup up runs (it holds the state directory), nothing changed.
    refused = await asyncio.to_thread(dialup, d.config_path, "restore", "--in-place")
    assert refused.returncode == 1 and "dialup.lock" in refused.stderr, refused.stderr
    assert (source / "new.html").exists()

    d.proc.terminate()  # type: ignore[union-attr]
    await asyncio.to_thread(d.proc.wait, 30)  # type: ignore[union-attr]
    done = await asyncio.to_thread(dialup, d.config_path, "restore", "--in-place")
    assert done.returncode == 0, done.stdout + done.stderr
    assert d.container("img").status == "exited"  # stopped first, as `dialup down` does
    assert (source / "index.html").read_text() == "as backed up" and not (source / "new.html").exists()
    kept = list(source.parent.glob("blog.before-restore-*"))
    assert len(kept) == 1 and (kept[0] / "new.html").exists()  # what was there: kept beside
    assert list(d.dir.glob("state.before-restore-*"))
    await d.start()
    await until(lambda: shows("as backed up"), 30, "the restored release")
    releases = json.loads((await asyncio.to_thread(dialup, d.config_path, "releases", "blog", "--json")).stdout)
    assert [r["id"] for r in releases if r["live"]] == ["r1"]
