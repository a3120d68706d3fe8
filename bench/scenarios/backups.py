"""backups: what backing a deployment up with restic (issue 14) costs, and how fast it comes back, each against a
baseline measured in the same run.

A deployment of 10 sites (`--quick`: 3): 6 static sites built from source (each a folder of pages, a stylesheet
and incompressible "images" of random bytes, about 3 MB) and 4 sites from images, each its own image (a layer of
its own over a local test image: busybox httpd, nginx, the Python app), tagged and labelled with the deployment
so that a restore has to bring it back.

1. first start: `dialup up` spawned until every site answers 200 through Caddy with its own body (the static
   sites are built at startup, the image sites started by that first request): the baseline of part 5.
2. full backup: `dialup backup --include-db`, its wall time against restic's own backup seconds (the summary
   line of each class), dialup's seconds per class (`dialup backups --json`: staging, restic, retention), and
   where the time went (the command's children looked at every 50 ms: `docker save`, `restic backup`, `restic
   check`, restic's other runs, dialup's own work); the repository's size (the bytes of its files) against what
   was backed up (restic's bytes read over the three classes: sources, published releases, the database, the
   config and the saved image tars): the compression and deduplication ratio.
3. incremental backup: one file of one site's source changed and deployed, then `dialup backup --include-db`
   again: its wall time against the full backup's, and what it added (the repository's growth).
4. a backup with nothing changed (not with `--quick`): what every scheduled backup costs at least.
5. restore: the deployment destroyed (its `dialup up` and Caddy stopped, its containers, images, state directory
   and sources removed), then `dialup restore --target-dir NEW --name NEW` timed, then the restored config's
   paths pointed at the new folder, the old ports reused, and `dialup up` spawned until every site answers 200
   with the same body as before. Baseline: part 1, the original deployment's first start.
6. a backup's effect on a running site: a client GETs one running site (nginx, a container) through Caddy every
   20 ms from before the full backup until after the last; p50/p99 while each backup runs, against windows with
   none (one before each backup and one after the last, each `window` seconds; the deploy of part 3 is in
   none). Also the CPU the backup's processes used (at nice 19), and what dockerd used meanwhile (`docker save`
   is done by the daemon, not by the niced client).

The running `dialup up` has no [backups] table (the table is added to its config file once it runs, for the
commands): with one, its scheduler backs every class up at go-live, and `dialup backup` would wait for that and
then find most of it stored, so the first timed backup would not be a full one. The restored deployment's config
has the table, so its scheduler starts (the figures say when). Every container and image made here carries the
deployment's label (Deployment.close() removes them, also on failure; the images the restore loads carry the old
deployment's label, and are removed by it at the end); the repository, its password file and the restore's own
state directory (restic's cache) are in a temporary folder removed at the end. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import docker
import orjson
import psutil

from bench.report import Figure, Result, percentile
from tests.integration.harness import LABEL, ROOT, Deployment, until

BENCH_LABEL = "dialup.bench"
KiB, MiB = 1 << 10, 1 << 20
UP_LIMIT = 180.0  # seconds a deployment may take to answer on every site
COMMAND_LIMIT = 600.0  # seconds a backup or restore command may take
SCHEDULED_LIMIT = 20.0  # seconds the restored deployment's first scheduled backup is waited for
PACE = 0.02  # seconds between the latency client's requests
WATCH = 0.05  # seconds between looks at the backup command's children
# (base image, what its request answers is made of): each image site's own image is built over one of these
BASES = (
    ("dialup-test-static:latest", "www"),  # busybox httpd serving /www
    ("dialup-test-nginx:latest", "www"),  # nginx serving /www
    ("dialup-test-pyapp:latest", "env"),  # answers "pyapp $APP_NAME /"
    ("dialup-test-static:latest", "www"),
)
TARGET = "img1"  # the site the latency client requests (nginx, idle_timeout off)


@dataclass(frozen=True)
class Plan:
    static_sites: int
    image_sites: int
    site_bytes: int  # incompressible bytes per static site (its images)
    image_bytes: int  # incompressible bytes in each image site's own layer
    window: float  # seconds of each window with no backup (latency baseline)
    unchanged: bool = True  # a third backup, with nothing changed (and one more window with none)
    schedule: bool = True  # the restored deployment's first scheduled backup waited for
    pages: int = 6


FULL = Plan(static_sites=6, image_sites=4, site_bytes=3 * MiB, image_bytes=2 * MiB, window=12.0)
QUICK = Plan(
    static_sites=2,
    image_sites=1,
    site_bytes=1 * MiB,
    image_bytes=1 * MiB,
    window=3.0,
    unchanged=False,
    schedule=False,
    pages=3,
)


# -- the deployment ----------------------------------------------------------------------------------------

PARAGRAPH = "<p>Words of a friend's page, about the things they like, repeated for a realistic size.</p>\n"


def _page(title: str, marker: str) -> str:
    return (
        f'<!doctype html><html><head><title>{title}</title><link rel="stylesheet" href="/style.css"></head>'
        f"<body><h1>{marker}</h1>\n" + PARAGRAPH * 80 + '<img src="/img/0.jpg"></body></html>\n'
    )


def _static_source(folder: Path, plan: Plan, marker: str) -> None:
    """A friend's small site: pages, a stylesheet and some photos (random bytes: they do not compress)."""
    (folder / "img").mkdir(parents=True)
    (folder / "index.html").write_text(_page("home", marker))
    for i in range(plan.pages):
        (folder / f"page{i}.html").write_text(_page(f"page {i}", f"{marker} page {i}"))
    (folder / "style.css").write_text("".join(f".c{i} {{ margin: {i}px; color: #{i:06x}; }}\n" for i in range(800)))
    photos = 8
    for i in range(photos):
        (folder / "img" / f"{i}.jpg").write_bytes(os.urandom(plan.site_bytes // photos))


def _image_context(folder: Path, base: str, way: str, marker: str, size: int, labels: dict[str, str]) -> str:
    """A build context for a site's own image over `base`; returns the body its GET / answers."""
    (folder / "www").mkdir(parents=True)
    (folder / "www" / "asset.bin").write_bytes(os.urandom(size))
    lines = [f"FROM {base}", *(f'LABEL {k}="{v}"' for k, v in labels.items())]
    if way == "www":
        body = f"<!doctype html><title>{marker}</title><h1>{marker}</h1>\n"
        (folder / "www" / "index.html").write_text(body)
        lines.append("COPY www /www")
    else:
        body = f"pyapp {marker} /\n"
        lines += [f'ENV APP_NAME="{marker}"', "COPY www/asset.bin /app/asset.bin"]
    (folder / "Dockerfile").write_text("\n".join(lines) + "\n")
    return body


@dataclass
class Sites:
    config: list[dict[str, Any]] = field(default_factory=list)
    bodies: dict[str, str] = field(default_factory=dict)  # site -> the body its GET / answers
    images: list[str] = field(default_factory=list)  # the image tags made


def _build(client: docker.DockerClient, d: Deployment, plan: Plan, scratch: Path, sites: Sites) -> None:
    """Each site's source or image; blocking (the docker SDK)."""
    for i in range(plan.static_sites):
        name = f"site{i}"
        marker = f"{name} {uuid.uuid4().hex[:8]}"
        _static_source(d.dir / "sources" / name, plan, marker)
        sites.config.append({"name": name, "hosts": [f"{name}.test"], "source": f"sources/{name}"})
        sites.bodies[name] = (d.dir / "sources" / name / "index.html").read_text()
    labels = {LABEL: d.name, BENCH_LABEL: "backups"}
    order = (1, 0, 2, 3) if plan.image_sites > 1 else (1,)  # nginx (the latency target) first
    for i in order[: plan.image_sites]:
        base, way = BASES[i]
        name, tag = f"img{i}", f"dialup-bench-backups-{d.name}-img{i}:1"
        body = _image_context(scratch / name, base, way, f"{name} {uuid.uuid4().hex[:8]}", plan.image_bytes, labels)
        client.images.build(path=str(scratch / name), tag=tag, rm=True, forcerm=True)
        sites.images.append(tag)
        site: dict[str, Any] = {"name": name, "hosts": [f"{name}.test"], "image": tag, "port": 8080}
        if name == TARGET:
            site["idle_timeout"] = "off"  # requested all along: never stopped
        sites.config.append(site)
        sites.bodies[name] = body


async def _get(session: aiohttp.ClientSession, d: Deployment, site: str) -> tuple[int, str]:
    async with session.get(d.url + "/", headers={"Host": f"{site}.test"}) as r:
        return r.status, (await r.read()).decode(errors="replace")


async def _all_answering(d: Deployment, bodies: dict[str, str], began: float) -> dict[str, float]:
    """Every site polled (GET / through Caddy) until it answers 200 with its body; seconds since `began` each did."""
    done: dict[str, float] = {}

    async def one(s: aiohttp.ClientSession, site: str) -> None:
        while True:
            if d.proc is not None and d.proc.poll() is not None:
                raise AssertionError(f"dialup up exited with {d.proc.returncode} (log: {d.log_path})")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if await _get(s, d, site) == (200, bodies[site]):
                    done[site] = time.monotonic() - began
                    return
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        try:
            await asyncio.wait_for(asyncio.gather(*(one(s, site) for site in bodies)), UP_LIMIT)
        except TimeoutError:
            missing = sorted(set(bodies) - set(done))
            raise AssertionError(f"not answering after {UP_LIMIT:g} s: {missing} (log: {d.log_path})") from None
    return done


# -- the commands ------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One dialup command: its times, output, stderr lines (with when each came), and what its children did."""

    began: float
    ended: float = 0.0
    code: int | None = None
    out: str = ""
    lines: list[tuple[float, str]] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds of the command and every child it waited for (restic, docker save)
    activity: list[tuple[float, str]] = field(default_factory=list)  # (when, what its children were doing)
    children: dict[str, set[int]] = field(default_factory=dict)  # what -> the pids seen doing it (its runs)

    @property
    def seconds(self) -> float:
        return self.ended - self.began

    @property
    def err(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def spans(self) -> dict[str, float]:
        """Seconds spent in each activity (from the looks every WATCH seconds)."""
        spent: dict[str, float] = {}
        marks = [*self.activity, (self.ended, "")]
        for (t, what), (nxt, _) in itertools.pairwise(marks):
            spent[what] = spent.get(what, 0.0) + max(0.0, nxt - t)
        return spent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _doing(pid: int) -> tuple[str, int]:
    """What a command's children are doing now (`docker save`, `restic backup` ..., or "dialup": its own work),
    and the pid of the child doing it (0 for dialup)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return "dialup", 0
    for child in children:
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        for i, arg in enumerate(argv[:-1]):
            if os.path.basename(arg) in ("restic", "docker"):
                return f"{os.path.basename(arg)} {argv[i + 1]}", child.pid
    return "dialup", 0


async def _dialup(config: Path, *args: str, watch: bool = False) -> Run:
    """`python -m activator.cli ARGS -c CONFIG`, as a user runs it; stderr read as it comes (progress ends with
    a carriage return, not a newline). Killed, with its children, past COMMAND_LIMIT."""
    cpu = _children_cpu()
    run = Run(time.monotonic())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "activator.cli", *args, "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr

    async def read_err() -> None:
        rest = b""
        while chunk := await stderr.read(4096):
            now = time.monotonic()
            *whole, rest = re.split(rb"[\r\n]", rest + chunk)
            run.lines += [(now, line.decode(errors="replace").strip()) for line in whole if line.strip()]
        if rest.strip():
            run.lines.append((time.monotonic(), rest.decode(errors="replace").strip()))

    async def look() -> None:
        while True:
            what, pid = await asyncio.to_thread(_doing, proc.pid)
            run.activity.append((time.monotonic(), what))
            if pid:
                run.children.setdefault(what, set()).add(pid)
            await asyncio.sleep(WATCH)

    watcher = asyncio.ensure_future(look()) if watch else None
    try:
        out, _, run.code = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), read_err(), proc.wait()), COMMAND_LIMIT
        )
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the command and its restic or docker
        await proc.wait()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    run.ended = time.monotonic()
    run.out = out.decode(errors="replace")
    run.cpu = _children_cpu() - cpu
    if run.code != 0:
        raise AssertionError(f"dialup {' '.join(args)} exited {run.code}:\n{run.out}{run.err}")
    return run


SUMMARY = re.compile(
    r"^(db|sites|config): snapshot \w+: (\d+) files, ([\d.]+) MiB read, ([\d.]+) MiB added, ([\d.]+) s"
)
DONE = re.compile(r"^(\w+): snapshot \w+, \d+ files, (\d+) bytes read, (\d+) bytes new")  # backup_done's detail
STEP = re.compile(r"^(.*) \(([\d.]+) s\)$")


@dataclass
class Backup:
    run: Run
    restic_seconds: dict[str, float] = field(default_factory=dict)  # class -> restic's own (its summary)
    dialup_seconds: dict[str, float] = field(default_factory=dict)  # class -> staging + restic + retention
    read: dict[str, int] = field(default_factory=dict)  # class -> bytes restic read
    added: dict[str, int] = field(default_factory=dict)  # class -> bytes restic added
    verify_seconds: float = 0.0
    repository: int = 0  # bytes of the repository's files after it
    dockerd_cpu: float = 0.0  # CPU seconds dockerd used while it ran


def _dockerd() -> psutil.Process | None:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd":
            return proc
    return None


def _cpu_of(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


async def _backup(d: Deployment, repository: Path, latency: Latency, label: str) -> Backup:
    """`dialup backup --include-db` (its time a latency window named `label`), with its figures."""
    dockerd = _dockerd()
    before = _cpu_of(dockerd)
    done = Backup(await _dialup(d.config_path, "backup", "--include-db", watch=True))
    done.dockerd_cpu = _cpu_of(dockerd) - before
    latency.windows[label] = [(done.run.began, done.run.ended)]
    assert any(line.startswith("verified:") for _, line in done.run.lines), done.run.err
    for _, line in done.run.lines:
        if m := SUMMARY.match(line):
            done.restic_seconds[m[1]] = float(m[5])
    # The exact figures, from the backup_done events the command wrote (the summary line rounds to 0.1 MiB).
    events = [e for e in await d.events("(backups)") if e["kind"] in ("backup_done", "backup_verified")]
    for e in events[-4:]:
        if e["kind"] == "backup_verified":
            done.verify_seconds = (e["duration_ms"] or 0) / 1000
            continue
        if m := DONE.match(e["detail"]):
            done.read[m[1]], done.added[m[1]] = int(m[2]), int(m[3])
    listing = orjson.loads((await _dialup(d.config_path, "backups", "--json")).out)
    for kind, rows in listing["classes"].items():
        if rows:
            done.dialup_seconds[kind] = float(rows[0]["seconds"] or 0.0)  # newest first: this backup's
    done.repository = await asyncio.to_thread(_tree_bytes, repository)
    return done


# -- latency -----------------------------------------------------------------------------------------------


@dataclass
class Latency:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent, seconds)
    errors: int = 0
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # label -> (began, ended)

    def of(self, label: str) -> list[float]:
        spans = self.windows.get(label, [])
        return [s for t, s in self.samples if any(a <= t <= b for a, b in spans)]

    def during(self, run: Run, what: str) -> list[float]:
        """The samples sent while the command's children were doing `what`."""
        marks = [*run.activity, (run.ended, "")]
        spans = [(t, nxt) for (t, w), (nxt, _) in itertools.pairwise(marks) if w == what]
        return [s for t, s in self.samples if any(a <= t < b for a, b in spans)]


async def _client(d: Deployment, out: Latency, stop: asyncio.Event) -> None:
    """GET / of the target site through Caddy every PACE seconds (one keep-alive connection)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        tick = time.monotonic()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status, _ = await _get(s, d, TARGET)
                if status != 200:
                    out.errors += 1
            except (aiohttp.ClientError, OSError, TimeoutError):
                out.errors += 1
            out.samples.append((sent, time.monotonic() - sent))
            tick = max(tick + PACE, time.monotonic() - PACE)  # no catching up after a stall
            await asyncio.sleep(max(0.0, tick - time.monotonic()))


async def _idle(out: Latency, seconds: float) -> None:
    began = time.monotonic()
    await asyncio.sleep(seconds)
    out.windows.setdefault("idle", []).append((began, time.monotonic()))


# -- the scenario ------------------------------------------------------------------------------------------


@dataclass
class Restore:
    run: Run | None = None
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds since the command began (its own)
    up: dict[str, float] = field(default_factory=dict)  # site -> seconds from spawn to answering
    scheduled: int = 0  # backups the restored deployment's scheduler started before all answered
    first_scheduled: float | None = None  # seconds from its spawn until its scheduler's first backup was seen


@dataclass
class Outcome:
    sites: int = 0
    first_start: dict[str, float] = field(default_factory=dict)  # site -> seconds from spawn to answering
    full: Backup | None = None
    incremental: Backup | None = None
    unchanged: Backup | None = None
    repo_before_incremental: int = 0
    changed_bytes: int = 0  # the size of the file changed before the incremental backup
    restore: Restore = field(default_factory=Restore)
    latency: Latency = field(default_factory=Latency)
    sources: int = 0  # bytes of the sites' sources
    images: int = 0  # bytes of the site images (docker's Size)


def _backups_table(folder: Path) -> dict[str, str]:
    return {"repository": str(folder / "repo"), "password_file": str(folder / "backup.key")}


async def _restore(d: Deployment, d2: Deployment, folder: Path, bodies: dict[str, str], plan: Plan) -> Restore:
    """`d`'s backups restored into `d2`'s folder under its name, then `d2` brought up (the caller closes it)."""
    out = Restore()
    d2.config_path.unlink()  # the restore writes the config
    config = folder / "restore.toml"
    table = _backups_table(folder)
    config.write_text(
        f'[server]\nstate_dir = "{folder / "restore-state"}"\n'  # restic's cache (else /var/lib/dialup/system)
        f'[backups]\nrepository = "{table["repository"]}"\npassword_file = "{table["password_file"]}"\n'
    )
    out.run = await _dialup(config, "restore", "--target-dir", str(d2.dir), "--name", d2.name)
    assert f"dialup up -c {d2.config_path}" in out.run.out, out.run.out
    last = 0.0
    for _, line in out.run.lines:  # each step with the time since the command began, as it reports it
        if m := STEP.match(line):
            step = m[1].split(" (")[0]
            step = "wrote the config" if step.startswith("wrote ") else step
            step = "chose the snapshots" if step.startswith("chose ") else step
            out.steps[step[:50]] = float(m[2]) - last
            last = float(m[2])
    # What is this machine's own: the old folder's paths (its Caddy socket), the old ports (free again).
    text = d2.config_path.read_text().replace(str(d.dir), str(d2.dir))
    d2.config_path.write_text(text)
    d2.http_port, d2.listen_port, d2.log_port = d.http_port, d.listen_port, d.log_port
    spawned = time.monotonic()
    d2.spawn()
    out.up = await _all_answering(d2, bodies, spawned)
    # Its config has the [backups] table: under a new name nothing is backed up yet, so its scheduler starts.
    events = await d2.events("(backups)")
    out.scheduled = sum(1 for e in events if e["kind"] == "backup_started" and e["cause"] == "schedule")

    async def scheduled() -> bool:
        return any(e["kind"] == "backup_started" and e["cause"] == "schedule" for e in await d2.events("(backups)"))

    if not plan.schedule:
        return out
    with contextlib.suppress(AssertionError):  # seen within SCHEDULED_LIMIT, or not
        await until(scheduled, SCHEDULED_LIMIT, "the restored deployment's first scheduled backup")
        out.first_scheduled = time.monotonic() - spawned
    return out


async def backups(quick: bool) -> Result:
    plan = QUICK if quick else FULL
    client = docker.from_env()
    folder = Path(tempfile.mkdtemp(prefix="dialup-bench-backups-"))
    scratch = folder / "images"
    outcome = Outcome(sites=plan.static_sites + plan.image_sites)
    sites = Sites()
    d = Deployment(client, [])
    d2: Deployment | None = None
    began = time.monotonic()
    try:
        await asyncio.to_thread(_build, client, d, plan, scratch, sites)
        outcome.sources = await asyncio.to_thread(_tree_bytes, d.dir / "sources")
        outcome.images = sum(int(client.images.get(tag).attrs["Size"]) for tag in sites.images)
        server: dict[str, Any] = {"builds": {"source_roots": ["sources"]}}
        d.config_path.write_text(d.render(sites.config, **server))
        print(f"backups: {outcome.sites} sites made ({time.monotonic() - began:.0f} s)", flush=True)

        # 1: the first start, until every site answers.
        spawned = time.monotonic()
        d.spawn()
        outcome.first_start = await _all_answering(d, sites.bodies, spawned)
        await until(d._ready, 30, f"dialup up ready (log: {d.log_path})")
        print(f"backups: first start, all answering ({time.monotonic() - began:.0f} s)", flush=True)
        # The commands' config: the same file with [backups] (the running dialup up read it without).
        d.config_path.write_text(d.render(sites.config, **server, backups=_backups_table(folder)))

        stop = asyncio.Event()
        client_task = asyncio.ensure_future(_client(d, outcome.latency, stop))
        try:
            await until(lambda: len(outcome.latency.samples) > 5, 10, "the latency client's first answers")
            lat = outcome.latency
            await _idle(lat, plan.window)
            # 2: the full backup.
            outcome.full = await _backup(d, folder / "repo", lat, "full")
            print(f"backups: full backup done ({time.monotonic() - began:.0f} s)", flush=True)
            # 3: one file changed and deployed (not a measured window), then backed up again.
            index = d.dir / "sources" / "site0" / "index.html"
            index.write_text(index.read_text().replace("</h1>", " changed</h1>", 1))
            outcome.changed_bytes = index.stat().st_size
            deployed = await asyncio.to_thread(d.command, "deploy", "site0")
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            sites.bodies["site0"] = index.read_text()
            await _all_answering(d, {"site0": sites.bodies["site0"]}, time.monotonic())
            await asyncio.sleep(1.0)  # the deploy's own work settled
            await _idle(lat, plan.window)
            outcome.repo_before_incremental = await asyncio.to_thread(_tree_bytes, folder / "repo")
            outcome.incremental = await _backup(d, folder / "repo", lat, "incremental")
            print(f"backups: incremental backup done ({time.monotonic() - began:.0f} s)", flush=True)
            await _idle(lat, plan.window)
            if plan.unchanged:  # what a scheduled backup costs when nothing changed
                outcome.unchanged = await _backup(d, folder / "repo", lat, "unchanged")
                print(f"backups: backup with nothing changed done ({time.monotonic() - began:.0f} s)", flush=True)
                await _idle(lat, plan.window)
        finally:
            stop.set()
            await client_task

        # 4: the server lost (its dialup up, Caddy, containers, images, state and sources), then restored.
        await asyncio.to_thread(d.close)
        for tag in sites.images:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(tag, force=True)
        assert not client.images.list(filters={"label": f"{LABEL}={d.name}"}) and not d.dir.exists()
        d2 = Deployment(client, [])
        outcome.restore = await _restore(d, d2, folder, sites.bodies, plan)
        print(f"backups: restored, all answering ({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        if d2 is not None:
            await asyncio.to_thread(d2.close)  # first: its containers run the images the restore loaded
        await asyncio.to_thread(d.close)
        await asyncio.to_thread(_remove_images, client, d.name, sites.images)
        shutil.rmtree(folder, ignore_errors=True)
        client.close()
    return _result(plan, outcome)


def _remove_images(client: docker.DockerClient, name: str, tags: list[str]) -> None:
    """The site images made here and those the restore loaded (both carry the old deployment's label)."""
    for tag in tags:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(tag, force=True)
    for image in client.images.list(filters={"label": f"{LABEL}={name}"}):
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(image.id or "", force=True)


# -- the figures -------------------------------------------------------------------------------------------


def _ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000 if values else 0.0


MAIN = ("restic backup", "docker save", "restic check")


def _split(label: str, run: Run) -> list[Figure]:
    """Where a backup command's time went, from the looks at its children (a run shorter than a look is missed)."""
    spans, runs = run.spans(), run.children
    out = [Figure(f"  {label}: in {what} ({len(runs.get(what, ()))} runs)", spans.get(what, 0.0), "s") for what in MAIN]
    other = sorted(w for w in spans if w not in MAIN and w != "dialup")
    count, names = sum(len(runs.get(w, ())) for w in other), ", ".join(w.removeprefix("restic ") for w in other)
    out += [
        Figure(f"  {label}: in other restic runs ({count}: {names})", sum(spans[w] for w in other), "s"),
        Figure(f"  {label}: in dialup itself (Python, staging, db copy)", spans.get("dialup", 0.0), "s"),
    ]
    return out


def _result(plan: Plan, o: Outcome) -> Result:
    full, inc, restore = o.full, o.incremental, o.restore
    assert full is not None and inc is not None and restore.run is not None
    figures: list[Figure] = []
    first = max(o.first_start.values())
    read = sum(full.read.values())
    figures += [
        Figure(
            "full backup: dialup backup --include-db",
            full.run.seconds,
            "s",
            sum(full.restic_seconds.values()),
            "restic's own backup seconds, 3 classes",
        ),
        *(
            Figure(
                f"  full: {kind}, dialup's run (restic's own)",
                full.dialup_seconds.get(kind, 0.0),
                "s",
                full.restic_seconds.get(kind),
                "restic's seconds",
            )
            for kind in ("db", "sites", "config")
        ),
        Figure("  full: verification (restic check, 5% read)", full.verify_seconds, "s"),
    ]
    figures += _split("full", full.run)
    figures += [
        Figure("full backup: repository size", full.repository / MiB, "MiB", read / MiB, "what was backed up"),
        Figure("  backed up: sources", o.sources / MiB, "MiB"),
        Figure("  backed up: site images (docker's size)", o.images / MiB, "MiB"),
        Figure("  backed up: sites class, restic read", full.read.get("sites", 0) / MiB, "MiB"),
        Figure("incremental backup: one file changed", inc.run.seconds, "s", full.run.seconds, "the full backup"),
        Figure(
            "incremental backup: repository growth",
            (inc.repository - o.repo_before_incremental) / KiB,
            "KiB",
            full.repository / KiB,
            "the full backup's repository",
        ),
        Figure("  incremental: restic's new bytes (before compression)", sum(inc.added.values()) / KiB, "KiB"),
        Figure("  incremental: the changed file", o.changed_bytes / KiB, "KiB"),
        *_split("incremental", inc.run),
    ]
    runs = {"full": full, "incremental": inc}
    if o.unchanged is not None:
        same = o.unchanged
        runs["unchanged"] = same
        figures += [
            Figure("backup with nothing changed", same.run.seconds, "s", full.run.seconds, "the full backup"),
            Figure("  nothing changed: repository growth", (same.repository - inc.repository) / KiB, "KiB"),
            *_split("nothing changed", same.run),
        ]
    up = max(restore.up.values())
    figures += [
        Figure("restore: dialup restore", restore.run.seconds, "s"),
        *(Figure(f"  restore: {step}", seconds, "s") for step, seconds in restore.steps.items()),
        Figure("restore: restored dialup up to all answering", up, "s", first, "first start to all answering"),
        Figure("restore: total, to all answering", restore.run.seconds + up, "s", first, "first start"),
        Figure("  restore: scheduled backups started before all answered", restore.scheduled, "backups"),
    ]
    if restore.first_scheduled is not None:
        figures.append(Figure("  restore: its scheduler's first backup, after spawn", restore.first_scheduled, "s"))
    lat = o.latency
    idle = lat.of("idle")
    pooled = [v for label in runs for v in lat.of(label)]
    for label, values in [*((label, lat.of(label)) for label in runs), ("any", pooled)]:
        for p in (50, 99):
            name = f"latency p{p} during {'the ' + label if label != 'any' else 'any'} backup"
            figures.append(Figure(name, _ms(values, p), "ms", _ms(idle, p), "no backup"))
    for what in ("docker save", "restic backup", "restic check"):
        values = [v for b in runs.values() for v in lat.during(b.run, what)]
        if values:
            figures.append(
                Figure(
                    f"  latency p99 during {what} ({len(values)} requests)",
                    _ms(values, 99),
                    "ms",
                    _ms(idle, 99),
                    "none",
                )
            )
    figures += [
        Figure("  latency: requests", len(lat.samples), "requests"),
        Figure("  latency: errors", lat.errors, "requests", 0, "must be"),
    ]
    for label, b in runs.items():
        figures += [
            Figure(f"  {label} backup CPU: the command, restic, docker (nice 19)", b.run.cpu, "s"),
            Figure(f"  {label} backup CPU: dockerd meanwhile (not niced)", b.dockerd_cpu, "s"),
        ]
    return Result(
        "backups",
        f"{o.sites} sites ({plan.static_sites} static from source, {plan.site_bytes // MiB} MiB of photos each; "
        f"{plan.image_sites} from their own images): dialup backup --include-db, full, one file changed"
        f"{', nothing changed' if plan.unchanged else ''}, "
        "repository size, dialup restore and the restored dialup up until every site answers as before, and a "
        f"running site's latency (a GET every {PACE * 1000:.0f} ms) during the backups against windows of none",
        figures,
        {
            "latency, no backup": [v * 1000 for v in idle],
            **{f"latency, {label} backup": [v * 1000 for v in lat.of(label)] for label in runs},
        },
        unit="ms",
    )
