"""deploys: what a deploy from source costs a user and the sites around it, each against a floor or the way it
is done without dialup, measured in the same run.

1. static update, source to live: a `kind = "static"` site with a `source` (files served by Caddy); a file
   is edited, then `dialup deploy` (the CLI, its process start included: a user waits for it) or the admin
   API's `POST /sites/NAME/deploy`; timed from the deploy's start until a GET through Caddy (polled every
   few ms) returns the new content. Baseline: the same file work without dialup, in Python: the source copied
   to a new folder, a symlink to it swapped in with one rename, the file read back through it.
2. node update, dependencies unchanged, source to live: a running `kind = "node"` site built by dialup's
   recipe on the node base image; only server.js changes; the CLI deploy timed until the new text answers
   through Caddy (a build, a new container beside the old one, the swap). Baseline: a full build of the same
   source without cache (`DOCKER_BUILDKIT=1 /usr/bin/docker build --no-cache`, dialup's Dockerfile for it).
3. requests failed during a swap under load: 8 clients (keep-alive, aiohttp's silent second try off) loop
   GETs through Caddy at the node site during K CLI deploys. Baseline: the same load during K replacements
   by hand of a plain container of the same app (docker stop, rm, run on the same published port: what an
   operator does without dialup), straight to its published port.
4. a build's effect on a running site: p50/p99 of GETs through Caddy to a running nginx site under a steady
   paced load, (a) idle, (b) while dialup builds a source whose RUN step burns every core, with dialup's
   bounds on BuildKit's cgroup, and (c) the same build with the bounds lifted (the bench writes the cgroup
   back to the defaults and runs `docker build` itself, then restores dialup's values).

Every image and container made here carries the deployment's label (Deployment.close() removes them); the
plain containers also carry `dialup.bench=deploys` and are removed in a finally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import docker

from activator.builds.base_image import ensure_node_base
from activator.builds.limits import CGROUP_ROOT
from activator.builds.recipes import dockerfile
from activator.model import Kind
from bench.report import Figure, Result, percentile
from bench.scenarios.reloads import failure_kind
from tests.integration.harness import LABEL, Deployment, free_port, site, until

NGINX = "dialup-test-nginx:latest"  # the latency target (busybox httpd would be the bottleneck: DESIGN)
BUSYBOX = "dialup-test-static:latest"  # the base of the CPU-burning build (it has /bin/busybox)
DOCKER = "/usr/bin/docker"  # Debian's client: BuildKit works through it (DESIGN: known traps)
BENCH_LABEL = "dialup.bench"
NODE_PORT = 3000  # a node site built from source listens on PORT, 3000 unless `port` says otherwise
POLL = 0.003  # seconds between GETs while waiting for new content


@dataclass(frozen=True)
class Plan:
    static_runs: int  # each: one CLI deploy, one API deploy, one baseline copy, alternated
    node_runs: int  # each: one node update by the CLI and one build without cache, alternated
    swaps: int  # deploys under load, and as many replacements by hand
    burn: float  # seconds the build's RUN step burns CPU (and the idle window's length)
    rounds: int  # idle, bounded and unbounded windows, alternated
    boots: int  # the app's container started with `npm start` and with `node server.js`, alternated
    clients: int = 8  # swap load
    latency_clients: int = 4  # latency load, each paced
    pace: float = 0.01  # seconds between one latency client's requests


FULL = Plan(static_runs=10, node_runs=5, swaps=5, burn=10.0, rounds=2, boots=3)
QUICK = Plan(static_runs=2, node_runs=1, swaps=1, burn=2.0, rounds=1, boots=0)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _spread(label: str, values: list[float], base: list[float], base_name: str, scale: float = 1000.0) -> list[Figure]:
    """Median and worst of `values` (seconds) against the same of the baseline, in ms (or s with scale 1)."""
    unit = "ms" if scale == 1000.0 else "s"
    return [
        Figure(f"{label} median", _median(values) * scale, unit, _median(base) * scale, base_name),
        Figure(f"{label} worst", max(values) * scale, unit, max(base) * scale, base_name),
    ]


# -- the deployment ----------------------------------------------------------------------------------------

PAGE = "<!doctype html><title>bench</title><h1>{marker}</h1>\n" + "<p>Words of a blog post, repeated.</p>\n" * 150
NODE_APP = {
    "package.json": json.dumps(
        {"name": "bench-app", "version": "1.0.0", "private": True, "scripts": {"start": "node server.js"}}
    ),
    "package-lock.json": json.dumps(
        {"name": "bench-app", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
         "packages": {"": {"name": "bench-app", "version": "1.0.0"}}}
    ),
}  # fmt: skip
SERVER = 'require("http").createServer((q, s) => s.end("%s")).listen(process.env.PORT);\n'


def _static_source(folder: Path, marker: str) -> None:
    """A small blog: 30 pages, a stylesheet, a script and 10 images (about 1 MB)."""
    (folder / "posts").mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    (folder / "index.html").write_text(PAGE.format(marker=marker))
    for i in range(30):
        (folder / "posts" / f"{i}.html").write_text(PAGE.format(marker=f"post {i}") * 2)
    (folder / "style.css").write_text("".join(f".c{i} {{ margin: {i}px; color: #{i:06x}; }}\n" for i in range(600)))
    (folder / "app.js").write_text("".join(f"function f{i}(x) {{ return x * {i} + {i % 7}; }}\n" for i in range(2000)))
    rng = uuid.UUID(int=7).bytes  # fixed bytes: the images' content never changes between runs
    for i in range(10):
        (folder / "img" / f"{i}.png").write_bytes((rng + bytes([i])) * 2400)


def _node_source(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in NODE_APP.items():
        (folder / name).write_text(body)
    (folder / "server.js").write_text(SERVER % text)


def _burn_step(token: str, seconds: float, loops: int) -> str:
    script = (
        f"echo burn {token}; pids=''; i=0; while [ $i -lt {loops} ]; do (while :; do :; done) & pids=\"$pids $!\"; "
        f"i=$((i+1)); done; sleep {seconds:g}; kill $pids"
    )
    return f"FROM {BUSYBOX}\nRUN {json.dumps(['/bin/busybox', 'sh', '-c', script])}\n"


async def _releases(d: Deployment, name: str) -> list[dict[str, Any]]:
    return list(await d.admin_json(f"/sites/{name}/releases"))


async def _live(d: Deployment, name: str) -> str | None:
    return next((r["id"] for r in await _releases(d, name) if r["live"]), None)


async def _body(session: aiohttp.ClientSession, d: Deployment, host: str) -> tuple[int, str]:
    async with session.get(d.url + "/", headers={"Host": host}) as r:
        return r.status, (await r.read()).decode(errors="replace")


async def _until_serves(
    d: Deployment, host: str, marker: str, limit: float, deploy: asyncio.Future[Any] | None = None
) -> float:
    """Poll a GET through Caddy every few ms until its body holds `marker`; the monotonic time it did. A deploy
    under way that fails ends the wait with its error."""
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        while True:
            if deploy is not None and deploy.done() and deploy.exception() is not None:
                await deploy  # raises its error
            try:
                status, text = await _body(s, d, host)
                if status == 200 and marker in text:
                    return time.monotonic()
            except (aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{host} did not serve {marker!r} in {limit:g} s (log: {d.log_path})")
            await asyncio.sleep(POLL)


@dataclass
class Deploy:
    """One deploy: when it began, when the new content first answered, when the client returned, its steps."""

    began: float
    seen: float = 0.0
    returned: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds since the deploy began (activator's)
    details: dict[str, str] = field(default_factory=dict)  # step -> the rest of its line

    @property
    def to_live(self) -> float:
        return self.seen - self.began


STAMP = re.compile(r"^\[\s*([\d.]+)s\] (\w+)(.*)$")


async def _cli_deploy(d: Deployment, name: str) -> Deploy:
    """`python -m activator.cli deploy NAME -c FILE`, as a user runs it."""
    run = Deploy(time.monotonic())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "activator.cli",
        "deploy",
        name,
        "-c",
        str(d.config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    run.returned = time.monotonic()
    text = out.decode(errors="replace")
    if proc.returncode != 0 or "live: " not in text:
        raise AssertionError(f"dialup deploy {name} failed ({proc.returncode}):\n{text}{err.decode(errors='replace')}")
    for line in text.splitlines():
        if m := STAMP.match(line):
            run.steps.setdefault(m[2], float(m[1]))
            run.details.setdefault(m[2], m[3].strip())
    return run


async def _api_deploy(
    d: Deployment, name: str, on_line: Callable[[str], None] | None = None
) -> tuple[Deploy, list[dict[str, Any]]]:
    """POST /sites/NAME/deploy on the admin socket (the site's configured source), its JSON lines read as they
    come; with on_line, the build's output lines too (`?output=1`)."""
    run = Deploy(time.monotonic())
    events: list[dict[str, Any]] = []
    connector = aiohttp.UnixConnector(path=str(d.admin_socket))
    timeout = aiohttp.ClientTimeout(total=300)
    params = {"output": "1"} if on_line else {}
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as s,
        s.post(f"http://localhost/sites/{name}/deploy", params=params) as r,
    ):
        assert r.status == 200, await r.text()
        async for raw in r.content:
            event = json.loads(raw)
            if event["step"] == "output":
                if on_line:
                    on_line(event["line"])
                continue
            events.append(event)
            if "elapsed" in event:
                run.steps.setdefault(event["step"], float(event["elapsed"]))
    run.returned = time.monotonic()
    if not events or not events[-1].get("ok"):
        raise AssertionError(f"the API deploy of {name} failed: {events[-3:]} (log: {d.log_path})")
    return run, events


def _labels(d: Deployment) -> dict[str, str]:
    return {LABEL: d.name, BENCH_LABEL: "deploys"}


async def _docker_build(
    d: Deployment, context: Path, recipe: str, tag: str, no_cache: bool, on_line: Callable[[str], None] | None = None
) -> float:
    """`DOCKER_BUILDKIT=1 /usr/bin/docker build` of `context` with `recipe` on stdin; its seconds."""
    args = [DOCKER, "build", "--progress=plain", "--tag", tag]
    if no_cache:
        args.append("--no-cache")
    for key, value in _labels(d).items():
        args += ["--label", f"{key}={value}"]
    args += ["--file", "-", str(context)]
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(recipe.encode())
    proc.stdin.close()
    tail: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-19:], line]
        if on_line:
            on_line(line)
    code = await proc.wait()
    seconds = time.monotonic() - began
    if code != 0:
        raise AssertionError(f"docker build of {context} exited {code}:\n" + "\n".join(tail))
    return seconds


# -- 1: static update --------------------------------------------------------------------------------------


@dataclass
class Static:
    cli: list[Deploy] = field(default_factory=list)
    api: list[Deploy] = field(default_factory=list)
    copy: list[float] = field(default_factory=list)  # seconds


def _copy_and_swap(src: Path, site_dir: Path, n: int, marker: str) -> float:
    """The floor of the same file work: the source copied to a new folder, a symlink swapped to it in one
    rename, the edited file read back through it. Blocking."""
    began = time.perf_counter()
    target = site_dir / "releases" / f"b{n}"
    shutil.copytree(src, target)
    tmp = site_dir / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/b{n}", tmp)
    os.replace(tmp, site_dir / "current")
    assert marker in (site_dir / "current" / "index.html").read_text()
    return time.perf_counter() - began


async def _static(d: Deployment, plan: Plan, src: Path, out: Static) -> None:
    floor = d.dir / "floor"  # the baseline's own site folder, no Caddy
    (floor / "releases").mkdir(parents=True)
    token = uuid.uuid4().hex[:8]
    ways = ("cli", "api", "copy")
    for i in range(plan.static_runs):
        for way in ways[i % 3 :] + ways[: i % 3]:  # each way first in turn
            marker = f"v{i}-{way}-{token}"
            (src / "index.html").write_text(PAGE.format(marker=marker))
            if way == "copy":
                out.copy.append(await asyncio.to_thread(_copy_and_swap, src, floor, i, marker))
                continue
            deploy = _cli_deploy(d, "blog") if way == "cli" else _api_deploy(d, "blog")
            task: asyncio.Task[Any] = asyncio.ensure_future(deploy)
            try:
                seen = await _until_serves(d, "blog.test", marker, 60, task)
            finally:
                result = await task
            run = result if isinstance(result, Deploy) else result[0]
            run.seen = seen
            (out.cli if way == "cli" else out.api).append(run)


# -- 2: node update ----------------------------------------------------------------------------------------


@dataclass
class Node:
    updates: list[Deploy] = field(default_factory=list)
    full_builds: list[float] = field(default_factory=list)  # seconds
    boots: dict[str, list[float]] = field(default_factory=dict)  # command -> seconds from run to first answer
    image: str = ""  # the last full build's image: the plain container of part 3


def _build_seconds(run: Deploy) -> float:
    m = re.search(r"build_seconds=([\d.]+)", run.details.get("built", ""))
    return float(m[1]) if m else 0.0


async def _node(d: Deployment, plan: Plan, src: Path, base: str, out: Node) -> None:
    token = uuid.uuid4().hex[:8]
    for i in range(plan.node_runs):
        for part in ("update", "full") if i % 2 == 0 else ("full", "update"):
            text = f"node v{i} {token}"
            if part == "update":
                (src / "server.js").write_text(SERVER % text)
                task = asyncio.ensure_future(_cli_deploy(d, "app"))
                try:
                    seen = await _until_serves(d, "app.test", text, 120, task)
                finally:
                    run = await task
                run.seen = seen
                out.updates.append(run)
            else:
                context = d.dir / "full" / str(i)
                await asyncio.to_thread(shutil.copytree, src, context)
                (context / "server.js").write_text(SERVER % f"{text} full")
                recipe = dockerfile(Kind.NODE, context, base, NODE_PORT)
                assert recipe is not None
                out.image = f"dialup-{d.name}-bench:full{i}"
                out.full_builds.append(await _docker_build(d, context, recipe, out.image, no_cache=True))


async def _boots(client: docker.DockerClient, d: Deployment, plan: Plan, out: Node) -> None:
    """Where a swap's time goes: the app's container run with the node kind's CPU quota (0.5) until its port
    answers, with the recipe's `npm start` and with `node server.js` (the same image)."""
    cpus = Kind.NODE.defaults.cpus
    for i in range(plan.boots):
        for command in (["npm", "start"], ["node", "server.js"])[:: 1 if i % 2 == 0 else -1]:
            port = free_port()
            began = time.monotonic()
            made = await asyncio.to_thread(
                client.containers.run,
                out.image,
                command,
                detach=True,
                init=True,
                nano_cpus=int(cpus * 1e9),
                labels=_labels(d),
                ports={f"{NODE_PORT}/tcp": ("127.0.0.1", port)},
            )
            try:
                await _until_answers(f"http://127.0.0.1:{port}/", 60)
                out.boots.setdefault(" ".join(command), []).append(time.monotonic() - began)
            finally:
                await asyncio.to_thread(made.remove, force=True)


async def _until_answers(url: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        while True:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer in {limit:g} s")
            await asyncio.sleep(POLL)


# -- 3: swaps under load -----------------------------------------------------------------------------------


@dataclass
class Load:
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # body -> count
    first: dict[str, float] = field(default_factory=dict)  # body -> when it first answered
    seconds: float = 0.0
    longest_gap: float = 0.0  # seconds without any answer, over all clients
    last_ok: float = 0.0
    replacements: list[float] = field(default_factory=list)  # seconds each deploy or replacement took
    to_live: list[float] = field(default_factory=list)  # seconds from each deploy's start to its first answer
    retire: list[float] = field(default_factory=list)  # seconds from that answer until the deploy returned

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def ok(self, now: float) -> None:
        if self.last_ok:
            self.longest_gap = max(self.longest_gap, now - self.last_ok)
        self.last_ok = now


async def _under_load(url: str, host: str, clients: int, out: Load, work: Callable[[], Awaitable[None]]) -> None:
    """`clients` loops of GETs (one keep-alive connection each) while `work` runs."""
    stop = asyncio.Event()

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as s:
            s._retry_connection = False  # a GET whose connection closed before the answer is a failure here
            while not stop.is_set():
                out.requests += 1
                try:
                    async with s.get(url, headers={"Host": host}) as r:
                        body = (await r.read()).decode(errors="replace")
                        if r.status == 200:
                            out.answers[body] += 1
                            out.first.setdefault(body, time.monotonic())
                            out.ok(time.monotonic())
                        else:
                            out.failures[f"HTTP {r.status}"] += 1
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    out.failures[failure_kind(exc)] += 1
                    await asyncio.sleep(0)  # a refused connect fails at once: let the others run

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    began = time.monotonic()
    try:
        await until(lambda: out.last_ok, 10, f"a first answer from {url} ({host})")
        await work()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        out.seconds = time.monotonic() - began


def _answered(out: Load, text: str) -> Callable[[], bool]:
    return lambda: out.answers[text] > 0


def _answered_since(out: Load, last: float) -> Callable[[], bool]:
    return lambda: out.last_ok > last


async def _swaps(d: Deployment, plan: Plan, src: Path, out: Load) -> None:
    token = uuid.uuid4().hex[:8]

    async def deploys() -> None:
        for i in range(plan.swaps):
            text = f"swap v{i} {token}"
            (src / "server.js").write_text(SERVER % text)
            run = await _cli_deploy(d, "app")
            out.replacements.append(run.returned - run.began)
            await until(_answered(out, text), 10, f"an answer from {text!r}")
            out.to_live.append(out.first[text] - run.began)
            out.retire.append(run.returned - out.first[text])

    await _under_load(d.url + "/", "app.test", plan.clients, out, deploys)


def _run_plain(client: docker.DockerClient, d: Deployment, image: str, port: int) -> Any:
    return client.containers.run(
        image,
        detach=True,
        init=True,  # signals reach the app: a stop takes milliseconds (DESIGN: known traps)
        labels=_labels(d),
        ports={f"{NODE_PORT}/tcp": ("127.0.0.1", port)},
    )


async def _by_hand(client: docker.DockerClient, d: Deployment, plan: Plan, image: str, out: Load) -> None:
    """The same load during replacements by hand of a plain container: docker stop, rm, run."""
    port = free_port()
    made: list[Any] = []
    try:
        made.append(await asyncio.to_thread(_run_plain, client, d, image, port))

        async def replacements() -> None:
            for _ in range(plan.swaps):
                began = time.monotonic()
                old = made[-1]
                await asyncio.to_thread(old.stop)  # docker stop (its default grace of 10 s)
                await asyncio.to_thread(old.remove)
                made.remove(old)
                made.append(await asyncio.to_thread(_run_plain, client, d, image, port))
                await until(_answered_since(out, out.last_ok), 30, "the new plain container to answer")
                out.replacements.append(time.monotonic() - began)

        await _under_load(f"http://127.0.0.1:{port}/", "plain.test", plan.clients, out, replacements)
    finally:
        for c in client.containers.list(all=True, filters={"label": [f"{LABEL}={d.name}", f"{BENCH_LABEL}=deploys"]}):
            with contextlib.suppress(docker.errors.NotFound):
                await asyncio.to_thread(c.remove, force=True)


# -- 4: a build's effect on a running site -----------------------------------------------------------------


@dataclass
class Window:
    began: float = 0.0
    ended: float = 0.0
    cpu_ns: int = 0  # CPU time BuildKit's cgroup used over the window


@dataclass
class Latency:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (sent, seconds)
    errors: int = 0
    windows: dict[str, list[Window]] = field(default_factory=dict)

    def of(self, label: str) -> list[float]:
        return [s for w in self.windows.get(label, []) for t, s in self.samples if w.began <= t <= w.ended]


V1_FILES = (("cpu", "cpu.shares", "1024"), ("cpu", "cpu.cfs_quota_us", "-1"), ("memory", "memory.limit_in_bytes", "-1"))
V2_FILES = (("", "cpu.weight", "100"), ("", "cpu.max", "max 100000"), ("", "memory.max", "max"))


def _cgroup_files() -> list[tuple[Path, str]]:
    """BuildKit's cgroup files that dialup bounds, each with its unbounded value."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [(CGROUP_ROOT / "docker" / "buildkit" / name, free) for _, name, free in V2_FILES]
    return [(CGROUP_ROOT / ctl / "docker" / "buildkit" / name, free) for ctl, name, free in V1_FILES]


def _build_cpu_ns() -> int:
    v1 = CGROUP_ROOT / "cpuacct" / "docker" / "buildkit" / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text())
    v2 = CGROUP_ROOT / "docker" / "buildkit" / "cpu.stat"
    if v2.exists():
        usage = next(line for line in v2.read_text().splitlines() if line.startswith("usage_usec"))
        return int(usage.split()[1]) * 1000
    return 0


class StepWatch:
    """Follows a build's plain output: the window of the RUN step that holds `token`."""

    def __init__(self, token: str) -> None:
        self.token, self.step, self.window = token, "", Window()

    def __call__(self, line: str) -> None:
        if not self.step and "RUN" in line and self.token in line and line.startswith("#"):
            self.step = line.split()[0]
            self.window.began, self.window.cpu_ns = time.monotonic(), _build_cpu_ns()
        elif self.step and not self.window.ended and line.startswith(f"{self.step} DONE"):
            self.window.ended = time.monotonic()
            self.window.cpu_ns = _build_cpu_ns() - self.window.cpu_ns


async def _paced_load(d: Deployment, plan: Plan, out: Latency, stop: asyncio.Event) -> None:
    async def client(offset: float) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            tick = time.monotonic() + offset
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    async with s.get(d.url + "/", headers={"Host": "web.test"}) as r:
                        await r.read()
                        if r.status != 200:
                            out.errors += 1
                except (aiohttp.ClientError, OSError, TimeoutError):
                    out.errors += 1
                out.samples.append((sent, time.monotonic() - sent))
                tick = max(tick + plan.pace, time.monotonic() - plan.pace)  # no catching up after a stall
                await asyncio.sleep(max(0.0, tick - time.monotonic()))

    tasks = [asyncio.create_task(client(i * plan.pace / plan.latency_clients)) for i in range(plan.latency_clients)]
    await stop.wait()
    await asyncio.gather(*tasks)


async def _latency(d: Deployment, plan: Plan, out: Latency) -> None:
    burn_src = d.dir / "sources" / "burn"
    burn_src.mkdir(parents=True)
    loops = max(4, 2 * (os.cpu_count() or 1))
    stop = asyncio.Event()
    load = asyncio.ensure_future(_paced_load(d, plan, out, stop))
    try:
        await until(lambda: len(out.samples) > plan.latency_clients, 10, "the latency load's first answers")
        order = ("idle", "bounded", "unbounded")
        for r in range(plan.rounds):
            for label in order[r % 3 :] + order[: r % 3]:
                token = uuid.uuid4().hex[:12]
                watch = StepWatch(token)
                if label == "idle":
                    watch.window.began, before = time.monotonic(), _build_cpu_ns()
                    await asyncio.sleep(plan.burn)  # the measurement is time itself: a window of no build
                    watch.window.ended, watch.window.cpu_ns = time.monotonic(), _build_cpu_ns() - before
                elif label == "bounded":
                    (burn_src / "Dockerfile").write_text(_burn_step(token, plan.burn, loops))
                    await _api_deploy(d, "burn", on_line=watch)
                else:
                    context = d.dir / "unbounded" / token
                    context.mkdir(parents=True)
                    files = _cgroup_files()
                    kept = [(path, path.read_text().strip()) for path, _ in files if path.exists()]
                    try:
                        for path, free in files:
                            if path.exists():
                                path.write_text(free)
                        tag = f"dialup-{d.name}-bench:burn-{token}"
                        await _docker_build(d, context, _burn_step(token, plan.burn, loops), tag, True, watch)
                    finally:
                        for path, value in kept:  # dialup's values, as its last build set them
                            path.write_text(value)
                assert watch.window.ended, f"{label}: the build's RUN step was not seen to start and end"
                out.windows.setdefault(label, []).append(watch.window)
    finally:
        stop.set()
        await load


# -- the scenario ------------------------------------------------------------------------------------------


async def _deployment(client: docker.DockerClient, base: str) -> Deployment:
    sites: list[dict[str, Any]] = [
        {"name": "blog", "hosts": ["blog.test"], "source": "sources/blog"},  # kind static: files
        {"name": "app", "hosts": ["app.test"], "source": "sources/app", "kind": "node", "idle_timeout": "off"},
        {"name": "burn", "hosts": ["burn.test"], "source": "sources/burn", "kind": "node", "port": 8080},
        site("web", NGINX, idle_timeout="off"),
    ]
    d = Deployment(client, sites, builds={"source_roots": ["sources"], "node_image": base})
    _static_source(d.dir / "sources" / "blog", "first")
    _node_source(d.dir / "sources" / "app", "first")  # burn's source is made later: not built at startup
    try:
        await d.start()
        await until(lambda: _live(d, "blog"), 60, f"the static site's first release (log: {d.log_path})")
        await until(lambda: _live(d, "app"), 180, f"the node site's first release (log: {d.log_path})")
    except BaseException:
        await asyncio.to_thread(d.close)
        raise
    return d


async def _start(d: Deployment, name: str) -> None:
    """A site started by a request through Caddy, and routed to its container (kept running: idle_timeout off)."""
    async with aiohttp.ClientSession() as s:
        status, text = await _body(s, d, f"{name}.test")
        assert status == 200, f"{name}: {status} {text[:200]}"
    await d.wait_routed(name)


def _percentiles(values: list[float]) -> list[float]:
    return [percentile(values, p) for p in range(101)] if values else []


def _steps(runs: list[Deploy], step: str) -> list[float]:
    return [r.steps[step] for r in runs if step in r.steps]


async def deploys(quick: bool) -> Result:
    plan = QUICK if quick else FULL
    client = docker.from_env()
    base = await asyncio.to_thread(ensure_node_base, log=lambda line: None)
    static, node, swaps, by_hand, latency = Static(), Node(), Load(), Load(), Latency()
    began = time.monotonic()
    d = await _deployment(client, base)
    try:
        print(f"deploys: dialup up, first releases live ({time.monotonic() - began:.0f} s)", flush=True)
        await _start(d, "web")
        # The node app's first start (seconds: npm at 0.5 CPU) runs beside the static part in a quick run only:
        # in a full one it would slow the static figures.
        starting = asyncio.ensure_future(_start(d, "app"))
        try:
            if not quick:
                await starting
            await _static(d, plan, d.dir / "sources" / "blog", static)
        finally:
            await starting
        print(f"deploys: static updates done ({time.monotonic() - began:.0f} s)", flush=True)
        await _node(d, plan, d.dir / "sources" / "app", base, node)
        await _boots(client, d, plan, node)
        print(f"deploys: node updates done ({time.monotonic() - began:.0f} s)", flush=True)
        await _swaps(d, plan, d.dir / "sources" / "app", swaps)
        await _by_hand(client, d, plan, node.image, by_hand)
        print(f"deploys: swaps under load done ({time.monotonic() - began:.0f} s)", flush=True)
        await _latency(d, plan, latency)
        print(f"deploys: latency under builds done ({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        await asyncio.to_thread(d.close)
        client.close()
    return _result(plan, static, node, swaps, by_hand, latency)


def _result(plan: Plan, static: Static, node: Node, swaps: Load, by_hand: Load, latency: Latency) -> Result:
    copy = "copy + symlink swap in Python, no Caddy"
    full = "full build, no cache (docker build --no-cache)"
    hand = "plain container replaced by hand (stop, rm, run)"
    figures = [
        *_spread("static, CLI: source to live", [r.to_live for r in static.cli], static.copy, copy),
        *_spread("static, API: source to live", [r.to_live for r in static.api], static.copy, copy),
        Figure("  static, activator: snapshot + hash", _median(_steps(static.cli + static.api, "hashed")) * 1000, "ms"),
        Figure("  static, activator: + compress + publish", _median(_steps(static.cli + static.api, "built")) * 1000,
               "ms"),
        Figure("  static, activator: + symlink swap (live)", _median(_steps(static.cli + static.api, "live")) * 1000,
               "ms"),
        Figure("  static, CLI: returned", _median([r.returned - r.began for r in static.cli]) * 1000, "ms"),
        *_spread("node update: source to live", [r.to_live for r in node.updates], node.full_builds, full, 1.0),
        Figure("  node: image build (deps layer reused)", _median(list(map(_build_seconds, node.updates))), "s"),
        Figure(
            "  node: swap (new container to live)",
            _median([r.steps["live"] - r.steps["swap"] for r in node.updates if {"live", "swap"} <= set(r.steps)]),
            "s",
        ),
        Figure("  node: CLI returned", _median([r.returned - r.began for r in node.updates]), "s"),
        *(
            [Figure("  node: app container run to first answer, npm start (0.5 CPU)", _median(node.boots["npm start"]),
                    "s", _median(node.boots["node server.js"]), "the same, node server.js")]
            if node.boots else []
        ),
        Figure(f"swap under load: failures ({plan.swaps} deploys)", swaps.failed, "requests", by_hand.failed, hand),
        Figure("swap under load: requests", swaps.requests, "requests", by_hand.requests, hand),
        Figure("swap under load: answered (200)", swaps.requests - swaps.failed, "requests",
               by_hand.requests - by_hand.failed, hand),
        Figure(
            "swap under load: per second",
            swaps.requests / swaps.seconds if swaps.seconds else 0,
            "req/s",
            by_hand.requests / by_hand.seconds if by_hand.seconds else 0,
            hand,
        ),
        Figure("swap under load: longest without an answer", swaps.longest_gap * 1000, "ms",
               by_hand.longest_gap * 1000, hand),
        *(
            Figure(f"  failed: {kind}", swaps.failures[kind], "requests", by_hand.failures[kind], hand)
            for kind in sorted(set(swaps.failures) | set(by_hand.failures))
        ),
        Figure("swap under load: each deploy / replacement", _median(swaps.replacements), "s",
               _median(by_hand.replacements), hand),
        Figure("  under load: deploy's start to the new release's first answer", _median(swaps.to_live), "s"),
        Figure("  under load: from then until the deploy returned (drain, stop)", _median(swaps.retire), "s"),
        Figure("CPUs", float(os.cpu_count() or 0), "cores"),
    ]  # fmt: skip
    idle = latency.of("idle")
    for label, name in (("bounded", "dialup's bounds"), ("unbounded", "bounds lifted")):
        values = latency.of(label)
        for p in (50, 99):
            figures.append(
                Figure(
                    f"latency p{p}, build with {name}",
                    percentile(values, p) * 1000,
                    "ms",
                    percentile(idle, p) * 1000,
                    "idle, no build",
                )
            )
    for p in (50, 99):
        figures.append(
            Figure(
                f"latency p{p}, bounds against none",
                percentile(latency.of("bounded"), p) * 1000,
                "ms",
                percentile(latency.of("unbounded"), p) * 1000,
                "bounds lifted",
            )
        )
    for label in ("idle", "bounded", "unbounded"):
        windows = latency.windows.get(label, [])
        seconds = sum(w.ended - w.began for w in windows)
        figures.append(
            Figure(
                f"  build CPU over the {label} windows",
                100 * sum(w.cpu_ns for w in windows) / 1e9 / seconds if seconds else 0,
                "% of a core",
            )
        )
    figures.append(Figure("  latency load: requests", len(latency.samples), "requests"))
    figures.append(Figure("  latency load: errors", latency.errors, "requests", 0, "must be"))
    return Result(
        "deploys",
        f"static and node deploys from source to live ({plan.static_runs} and {plan.node_runs} runs), "
        f"{plan.clients} clients during {plan.swaps} swaps, latency under a CPU-heavy build "
        f"({os.cpu_count()} CPUs); each against a same-run baseline",
        figures,
        {
            name: [v * 1000 for v in values]
            for name, values in {
                "static CLI, source to live": [r.to_live for r in static.cli],
                "static API, source to live": [r.to_live for r in static.api],
                "static copy + swap (baseline)": static.copy,
                "node update, source to live": [r.to_live for r in node.updates],
                "node full build, no cache (baseline)": node.full_builds,
                "node app boot, npm start": node.boots.get("npm start", []),
                "node app boot, node server.js": node.boots.get("node server.js", []),
                # Thousands of requests each: their percentiles 0, 1, ..., 100 (the file stays small).
                "latency, idle (percentiles)": _percentiles(idle),
                "latency, bounded build (percentiles)": _percentiles(latency.of("bounded")),
                "latency, unbounded build (percentiles)": _percentiles(latency.of("unbounded")),
            }.items()
        },
        unit="ms",
    )
