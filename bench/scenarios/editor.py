"""editor: what the browser editor (issue 13) costs a user and the machine, each against a baseline measured in
the same run.

1. keystroke to preview, static site: a `kind = "static"` site with a `source`; its preview host is served by
   Caddy from the workspace's files. N saves of index.html over the editor's WebSocket (the sync protocol's
   `write`), each with a new marker; timed from sending the write until a GET of the preview host through
   Caddy (polled every few ms) returns the marker. Baseline, alternated: the same file written straight into
   the workspace by Python (a temporary file renamed into place, as the editor does), then the same polling.
2. keystroke to preview, dev server: a `kind = "node"` site (a plain node app, no dependencies) gets a
   development container on its preview host, whose runner starts the app again when a file changes; N saves
   of server.js, each answering a new marker; timed until a GET of the preview host through Caddy returns it.
   Baseline, the same saves: the app's own port (the holder's published port, no Caddy, no activator) polled
   the same way at the same time: the runner's restart alone.
3. a development container's cold start: it is stopped from outside (`docker stop`, then the route back on
   the activator), then the clock runs from sending GET / to the preview host through Caddy until its 200.
   Baseline, alternated: the same app's production release (built from the same source by dialup's recipe),
   stopped and started the same way.
4. the editor's memory and CPU: it runs in the `dialup up` process, so that process's resident memory
   (/proc/PID/status VmRSS, the peak of samples every 100 ms) and CPU time (/proc/PID/stat utime + stime) over
   a fixed window: with no tab connected (the baseline), then one tab connected and idle, then 3 tabs (3
   WebSockets of one session) each saving a file of its own every 300 ms.

Every container is the deployment's (Deployment.close() removes them and its images, also on failure); the
bench makes none of its own. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import docker
import orjson

from activator.builds.base_image import ensure_node_base
from activator.editor.devserver import dev_user
from activator.editor.workspace import content_hash
from bench.cold_start import stop_site
from bench.report import Figure, Result, percentile
from bench.scenarios.deploys import NODE_APP, PAGE, SERVER
from tests.integration.harness import Deployment, free_port, until

EDITOR_HOST = "editor.localhost"
PREVIEW = "{site}-dev.localhost"
NODE_PORT = 3000  # a node site built from source listens on PORT, 3000 by default
POLL = 0.005  # seconds between GETs while waiting for a save to show
STATIC_LIMIT, DEV_LIMIT = 10.0, 30.0  # seconds one save may take to show
COLD_LIMIT = 120.0  # a development container's start timeout (activator/editor/devserver.py START_TIMEOUT)
TAB_PERIOD = 0.3  # seconds between one busy tab's saves
MiB = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    saves: int  # per site, each way (static: editor and direct write alternated)
    colds: int  # each: the development container's cold start and the production release's, alternated
    window: float  # seconds of each memory and CPU phase
    tabs: int = 3
    settle: float = 1.0  # seconds after a tab connects before its phase is measured
    # Dev server saves: paced as a person edits (a pause to look at the preview between saves), then some back to
    # back (each sent once the one before shows), when the runner's standby node has had no time to start.
    dev_saves: int = 25
    think: float = 2.0
    rapid: int = 10


FULL = Plan(saves=40, colds=5, window=10.0)
QUICK = Plan(saves=5, colds=1, window=3.0, dev_saves=3, rapid=2)


# -- the deployment ----------------------------------------------------------------------------------------


async def _deployment(client: docker.DockerClient, base: str) -> Deployment:
    sites: list[dict[str, Any]] = [
        {"name": "blog", "hosts": ["blog.test"], "source": "sources/blog"},  # kind static: files
        {"name": "app", "hosts": ["app.test"], "source": "sources/app", "kind": "node", "idle_timeout": "off"},
    ]
    editor = {
        "host": EDITOR_HOST,
        "listen": f"127.0.0.1:{free_port()}",
        "preview_host": PREVIEW,
        "idle_timeout": "30m",  # the bench stops the development container itself
    }
    d = Deployment(client, sites, builds={"source_roots": ["sources"], "node_image": base}, editor=editor)
    blog, app = d.dir / "sources" / "blog", d.dir / "sources" / "app"
    blog.mkdir(parents=True)
    (blog / "index.html").write_text(PAGE.format(marker="first"))
    app.mkdir(parents=True)
    for name, body in NODE_APP.items():
        (app / name).write_text(body)
    (app / "server.js").write_text(SERVER % "first")
    try:
        await d.start()

        async def live(name: str) -> bool:
            releases = await d.admin_json(f"/sites/{name}/releases")
            return any(r["live"] for r in releases)

        await until(lambda: live("blog"), 60, f"the static site's first release (log: {d.log_path})")
        await until(lambda: live("app"), 180, f"the node site's first release (log: {d.log_path})")
    except BaseException:
        await asyncio.to_thread(d.close)
        raise
    return d


def _preview(d: Deployment, site: str) -> str:
    return f"{PREVIEW.replace('{site}', site)}:{d.http_port}"


def _editor_headers(d: Deployment) -> dict[str, str]:
    return {"Host": f"{EDITOR_HOST}:{d.http_port}", "Origin": f"http://{EDITOR_HOST}:{d.http_port}"}


async def _login(d: Deployment, session: aiohttp.ClientSession, site: str) -> str:
    """A session cookie for the site, from `dialup editor-token`'s link (as a user opens it)."""
    made = await asyncio.to_thread(d.command, "editor-token", site)
    assert made.returncode == 0, made.stderr
    path = made.stdout.strip().partition(str(d.http_port))[2]
    async with session.get(d.url + path, headers=_editor_headers(d), allow_redirects=False) as r:
        assert r.status == 303, f"login to {site}: {r.status} {await r.text()}"
        return r.headers["Set-Cookie"].partition(";")[0]


class Tab:
    """One editor tab: a WebSocket of the sync protocol, its answers matched to requests by id, pushes counted."""

    _ids = itertools.count(1)

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pushes = 0
        self.hashes: dict[str, str] = {}  # path -> the version this tab last saw
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, d: Deployment, session: aiohttp.ClientSession, site: str, cookie: str) -> Tab:
        headers = {**_editor_headers(d), "Cookie": cookie}
        ws = await session.ws_connect(d.url + f"/sites/{site}/ws", headers=headers)  # bounded by the session
        return cls(ws)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = orjson.loads(message.data)
            waiting = self._waiting.pop(data["id"], None) if "id" in data else None
            if waiting is not None and not waiting.done():
                waiting.set_result(data)
            elif data.get("op") == "changed":
                self.pushes += 1

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        ident = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        await self.ws.send_str(orjson.dumps({**message, "id": ident}).decode())  # a text frame, as a browser's
        return await asyncio.wait_for(answer, 10)

    async def open_file(self, path: str) -> str:
        opened = await self.request({"op": "open", "path": path})
        assert opened["ok"], opened
        self.hashes[path] = opened["hash"]
        return str(opened["content"])

    async def write(self, path: str, content: str) -> dict[str, Any]:
        base = self.hashes.get(path)
        op = {"op": "write", "base": base} if base is not None else {"op": "create"}
        written = await self.request({**op, "path": path, "content": content})
        assert written["ok"], written
        self.hashes[path] = written["hash"]
        return written

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


async def _until_shows(session: aiohttp.ClientSession, url: str, host: str | None, marker: str, limit: float) -> float:
    """GET `url` (with Host `host`) every POLL seconds until a 200 whose body holds `marker`; the monotonic time
    its body arrived."""
    deadline = time.monotonic() + limit
    headers = {"Host": host} if host else {}
    wanted = marker.encode()
    while True:
        try:
            async with session.get(url, headers=headers) as r:
                body = await r.read()
                if r.status == 200 and wanted in body:
                    return time.monotonic()
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{host or url} did not show {marker!r} in {limit:g} s")
        await asyncio.sleep(POLL)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))


# -- 1: keystroke to preview, static site ------------------------------------------------------------------


@dataclass
class Keystrokes:
    shown: list[float] = field(default_factory=list)  # seconds from sending the save to the preview showing it
    rapid: list[float] = field(default_factory=list)  # the same, for saves sent back to back (dev server)
    acked: list[float] = field(default_factory=list)  # seconds from sending the save to its answer
    baseline: list[float] = field(default_factory=list)  # seconds, the baseline's way


def _write_direct(path: Path, content: str) -> None:
    """What the editor's write does to the disk, without the editor: a new file beside it, renamed into place."""
    tmp = path.with_name(f".bench-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as out:
        out.write(content.encode())
        out.flush()
        os.fsync(out.fileno())
    os.chown(tmp, *dev_user())
    os.replace(tmp, path)


async def _timed(began: float, work: Any) -> float:
    await work
    return time.monotonic() - began


async def _static(d: Deployment, plan: Plan, tab: Tab, out: Keystrokes) -> None:
    index = d.dir / "state" / "dev-workspaces" / "blog" / "index.html"
    await tab.open_file("index.html")
    url, host, token = d.url + "/", _preview(d, "blog"), uuid.uuid4().hex[:8]
    async with _session() as s:
        for i in range(plan.saves):
            for way in ("editor", "direct") if i % 2 == 0 else ("direct", "editor"):
                marker = f"static {i} {way} {token}"
                content = PAGE.format(marker=marker)
                began = time.monotonic()
                if way == "editor":
                    write = asyncio.ensure_future(_timed(began, tab.write("index.html", content)))
                else:
                    write = asyncio.ensure_future(_timed(began, asyncio.to_thread(_write_direct, index, content)))
                try:
                    seen = await _until_shows(s, url, host, marker, STATIC_LIMIT)
                finally:
                    acked = await write
                if way == "editor":
                    out.shown.append(seen - began)
                    out.acked.append(acked)
                else:
                    out.baseline.append(seen - began)
                    tab.hashes["index.html"] = content_hash(content.encode())


# -- 2: keystroke to preview, dev server -------------------------------------------------------------------


async def _dev(d: Deployment, plan: Plan, tab: Tab, out: Keystrokes) -> str:
    """The tab's WebSocket opened the site: its development container is starting (not timed here). Returns
    the marker the app answers last."""
    await tab.open_file("server.js")
    url, host, token = d.url + "/", _preview(d, "app"), uuid.uuid4().hex[:8]
    async with _session() as s, _session() as own:
        marker = f"dev warm {token}"
        await tab.write("server.js", SERVER % marker)
        await _until_shows(s, url, host, marker, COLD_LIMIT)
        port = (await d.status())["app-dev"]["host_port"]
        assert port, "the development container has no published port"
        direct = f"http://127.0.0.1:{port}/"
        for i in range(plan.dev_saves + plan.rapid):
            paced = i < plan.dev_saves
            if paced:
                await asyncio.sleep(plan.think)  # looking at the preview (not timed)
            marker = f"dev {i} {token}"
            began = time.monotonic()
            write = asyncio.ensure_future(_timed(began, tab.write("server.js", SERVER % marker)))
            at_port = asyncio.ensure_future(_until_shows(own, direct, None, marker, DEV_LIMIT))
            try:
                seen = await _until_shows(s, url, host, marker, DEV_LIMIT)
                own_port = await at_port - began
            finally:
                at_port.cancel()
                acked = await write
            if not paced:
                out.rapid.append(seen - began)
                continue
            out.baseline.append(own_port)
            out.shown.append(seen - began)
            out.acked.append(acked)
    return marker


# -- 3: cold starts ----------------------------------------------------------------------------------------


async def _cold(d: Deployment, plan: Plan, expected: dict[str, str], out: dict[str, list[float]]) -> None:
    """Each site stopped from outside, then GET / through Caddy until its 200 (the activator starts it)."""
    hosts = {"app-dev": _preview(d, "app"), "app": "app.test"}
    timeout = aiohttp.ClientTimeout(total=COLD_LIMIT + 10)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def get(name: str) -> float:
            began = time.monotonic()
            async with s.get(d.url + "/", headers={"Host": hosts[name]}) as r:
                body = await r.text()
            elapsed = time.monotonic() - began
            assert r.status == 200 and expected[name] in body, f"{name}: {r.status} {body[:200]}"
            return elapsed

        await get("app")  # the production release's first start (the development container's was in part 2)
        await d.wait_routed("app")
        for i in range(plan.colds):
            for name in ("app-dev", "app") if i % 2 == 0 else ("app", "app-dev"):
                await stop_site(d, name)
                out.setdefault(name, []).append(await get(name))


# -- 4: the editor's memory and CPU ------------------------------------------------------------------------


@dataclass
class Phase:
    rss: float = 0.0  # MiB, the peak of the window's samples
    cpu: float = 0.0  # % of one core over the window


@dataclass
class Footprint:
    phases: dict[str, Phase] = field(default_factory=dict)
    acked: list[float] = field(default_factory=list)  # seconds from each busy tab's save to its answer
    saves: int = 0  # saves answered in the busy window
    pushes: int = 0  # changes pushed to the tabs in the busy window


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5)


async def _window(pid: int, seconds: float) -> Phase:
    began, cpu, peak = time.monotonic(), _cpu_seconds(pid), 0
    while time.monotonic() < began + seconds:
        peak = max(peak, _rss(pid))
        await asyncio.sleep(0.1)
    ended, used = time.monotonic(), _cpu_seconds(pid) - cpu
    return Phase(max(peak, _rss(pid)) / MiB, 100 * used / (ended - began))


async def _keep_saving(tab: Tab, i: int, stop: asyncio.Event, out: Footprint) -> None:
    """A save of the tab's own file every TAB_PERIOD, the tabs' ticks spread over the period."""
    path, tick = f"tab{i}.html", time.monotonic() + i * TAB_PERIOD / 3
    for n in itertools.count():
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        if stop.is_set():
            return
        began = time.monotonic()
        await tab.write(path, PAGE.format(marker=f"tab {i} save {n}"))
        out.acked.append(time.monotonic() - began)
        tick = max(tick + TAB_PERIOD, time.monotonic())  # no catching up after a slow save


async def _footprint(d: Deployment, plan: Plan, session: aiohttp.ClientSession, cookie: str, out: Footprint) -> None:
    assert d.proc is not None
    pid = d.proc.pid
    await asyncio.sleep(plan.settle)
    out.phases["no tab"] = await _window(pid, plan.window)
    tabs = [await Tab.open(d, session, "blog", cookie)]
    try:
        await tabs[0].request({"op": "list"})  # the workspace, made from the source at the first open
        await asyncio.sleep(plan.settle)
        out.phases["1 tab, idle"] = await _window(pid, plan.window)
        tabs += [await Tab.open(d, session, "blog", cookie) for _ in range(plan.tabs - 1)]
        for i, tab in enumerate(tabs):
            await tab.write(f"tab{i}.html", PAGE.format(marker=f"tab {i}"))  # created
        await asyncio.sleep(plan.settle)
        stop = asyncio.Event()
        pushes, acked = sum(t.pushes for t in tabs), len(out.acked)
        saving = [asyncio.ensure_future(_keep_saving(tab, i, stop, out)) for i, tab in enumerate(tabs)]
        try:
            out.phases[f"{plan.tabs} tabs saving"] = await _window(pid, plan.window)
        finally:
            stop.set()
            await asyncio.gather(*saving)
        out.saves = len(out.acked) - acked
        await asyncio.sleep(0.2)  # the last saves' pushes
        out.pushes = sum(t.pushes for t in tabs) - pushes
    finally:
        for tab in tabs:
            await tab.close()


# -- the scenario ------------------------------------------------------------------------------------------


async def editor(quick: bool) -> Result:
    plan = QUICK if quick else FULL
    client = docker.from_env()
    base = await asyncio.to_thread(ensure_node_base, log=lambda line: None)
    static, dev, footprint, cold = Keystrokes(), Keystrokes(), Footprint(), dict[str, list[float]]()
    began = time.monotonic()
    d = await _deployment(client, base)
    try:
        print(f"editor: dialup up, first releases live ({time.monotonic() - began:.0f} s)", flush=True)
        async with _session() as session:
            blog = await _login(d, session, "blog")
            app = await _login(d, session, "app")
            await _footprint(d, plan, session, blog, footprint)
            print(f"editor: memory and CPU done ({time.monotonic() - began:.0f} s)", flush=True)
            tab = await Tab.open(d, session, "blog", blog)
            try:
                await _static(d, plan, tab, static)
            finally:
                await tab.close()
            print(f"editor: static keystrokes done ({time.monotonic() - began:.0f} s)", flush=True)
            tab = await Tab.open(d, session, "app", app)
            try:
                last = await _dev(d, plan, tab, dev)
            finally:
                await tab.close()
            print(f"editor: dev server keystrokes done ({time.monotonic() - began:.0f} s)", flush=True)
        await _cold(d, plan, {"app-dev": last, "app": "first"}, cold)
        print(f"editor: cold starts done ({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        await asyncio.to_thread(d.close)
        client.close()
    return _result(plan, static, dev, cold, footprint)


def _ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000 if values else 0.0


def _result(
    plan: Plan, static: Keystrokes, dev: Keystrokes, cold: dict[str, list[float]], footprint: Footprint
) -> Result:
    direct = "file written by Python (temp + rename), same polling"
    own = "the same saves at the app's own port (no Caddy, no activator)"
    figures = []
    for label, runs, base_name in (("static", static, direct), ("dev server", dev, own)):
        for p in (50, 95):
            figures.append(
                Figure(f"{label}: save to preview p{p}", _ms(runs.shown, p), "ms", _ms(runs.baseline, p), base_name)
            )
        figures.append(Figure(f"  {label}: save answered p50", _ms(runs.acked, 50), "ms"))
    figures += [Figure(f"  dev server: save to preview, back to back, p{p}", _ms(dev.rapid, p), "ms") for p in (50, 95)]
    lag = [shown - at_port for shown, at_port in zip(dev.shown, dev.baseline, strict=True)]  # the same saves
    figures += [Figure(f"  dev server: through Caddy after the app's port, p{p}", _ms(lag, p), "ms") for p in (50, 95)]
    dev_cold, prod_cold = cold.get("app-dev", []), cold.get("app", [])
    release = "the production release of the same app"
    figures += [
        Figure("dev container cold start median", _ms(dev_cold, 50), "ms", _ms(prod_cold, 50), release),
        Figure("dev container cold start worst", _ms(dev_cold, 100), "ms", _ms(prod_cold, 100), release),
    ]
    none = footprint.phases.get("no tab", Phase())
    for name, phase in footprint.phases.items():
        if name != "no tab":
            figures.append(Figure(f"editor RSS, {name}", phase.rss, "MiB", none.rss, "no tab connected"))
            figures.append(Figure(f"editor CPU, {name}", phase.cpu, "% of a core", none.cpu, "no tab connected"))
    figures += [
        Figure(f"  {plan.tabs} tabs: saves in {plan.window:g} s", footprint.saves, "saves"),
        Figure(f"  {plan.tabs} tabs: changes pushed to the tabs", footprint.pushes, "pushes"),
        Figure(f"  {plan.tabs} tabs: save answered p50", _ms(footprint.acked, 50), "ms"),
        Figure(f"  {plan.tabs} tabs: save answered p95", _ms(footprint.acked, 95), "ms"),
    ]
    return Result(
        "editor",
        f"keystroke to preview ({plan.saves} saves each way on a static site; {plan.dev_saves} saves {plan.think:g} s "
        f"apart and {plan.rapid} back to back on a node dev server), a development "
        f"container's cold start ({plan.colds} runs), the editor's memory and CPU ({plan.window:g} s windows: no "
        f"tab, 1 idle tab, {plan.tabs} tabs saving every {TAB_PERIOD * 1000:.0f} ms); each against a same-run "
        "baseline",
        figures,
        {
            name: [v * 1000 for v in values]
            for name, values in {
                "static: save to preview": static.shown,
                "static: direct write to preview (baseline)": static.baseline,
                "dev server: save to preview": dev.shown,
                "dev server: at the app's own port (baseline)": dev.baseline,
                "dev server: save to preview, back to back": dev.rapid,
                "dev container cold start": dev_cold,
                "production release cold start (baseline)": prod_cold,
                f"{plan.tabs} tabs: save answered": footprint.acked,
            }.items()
        },
        unit="ms",
    )
