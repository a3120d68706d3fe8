"""scaling: a scalable site's second instance and per-site rate limits, each against a baseline from the same run.

1. throughput on 2 instances: wrk -t2 -c16 through Caddy at a CPU-bound app (the pyapp's /work?ms=10: 10 ms of
   CPU per request, `cpus = 1.0` per instance) on a scalable site once it runs 2 instances (warmed up until both
   answer; scale_down_delay long enough that it stays at 2). Baseline: the same app as a persistent site (one
   instance) in the same deployment, rounds alternated.
2. time to the second instance: a fresh deployment, the scalable site on 1 instance; at t0 a steady paced load
   above its threshold begins (GET /instance, which answers a token per container); timed until the first 200
   whose token differs from the one seen before t0 (the second instance serving through Caddy). Baseline: the
   cold start of a lazy twin (same image, kind and cpus) in the same deployment: its first request through
   Caddy. The scale-up is a detection (the rate passing a threshold over a window) followed by one container
   start, so the twin's cold start is its floor, measured, where the panic window is a constant.
3. the rate limiter's accuracy: a site with rate_limit { rate = "20/s", burst = 20 } offered 100 requests/s (16
   connections at most) from idle; allowed requests/s from a second after the first `rate_limited` event to the
   end, and from a second after the last one (the route can come back to the container in between: the events
   say when it was on the limiter), against the configured 20/s; the route's switches; the share of the 200s that
   Caddy answered directly (sent while the route was on the container). Then, at the same time, twin sites
   offered 30/s (just over the limit: the common case) and 16/s (under it: the route should never move).
4. the limiter's cost per request: p50/p99 of the 200 answers of a site held on the activator (limit 50/s, burst
   10, offered 60/s; only requests sent while the events say it was held) against the same site served by Caddy
   directly at 25/s (half its limit: see bench/README.md for why not closer), alternated; and the activator's
   (and Caddy's) CPU per 1,000 requests in each phase (utime + stime from /proc/PID/stat).

Every deployment has `[thresholds] sustained` raised so that the host's CPU never counts as congestion: under
congestion the monitor halves non-persistent sites' limits (and gives sites without one the plan's zone, 50/s for
an app) and lowers their CPU weight; this scenario measures the scaler and the limiter, not that response (the
persistent baseline would be exempt from it and the scalable site not). Every deployment is closed in a finally.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import docker
import psutil

from bench.report import Figure, Result, percentile
from tests.integration.harness import Deployment, site, until

PYAPP = "dialup-test-pyapp:latest"
APP = {"kind": "node", "cpus": 1.0}  # an app's memory (256 MiB); a whole core per instance
QUIET = {"sustained": 1_000_000}  # no congestion response (see the module's docstring)
WORK_MS = 10  # CPU per request of the CPU-bound path
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


# -- load ----------------------------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # unix seconds (the event log's clock)
    latency: float  # seconds, from the call to the last byte (a wait for a free connection included)
    status: int  # 0: no answer
    body: str
    retry_after: str


class Load:
    """GETs at `rate` a second (changeable while it runs), each sent on its schedule whatever the others do, over
    at most `connections` connections (a request that finds none free waits in aiohttp's pool)."""

    def __init__(self, d: Deployment, host: str, path: str, rate: float, connections: int = 8) -> None:
        self.url, self.host, self.rate, self.connections = d.url + path, host, rate, connections
        self.answers: list[Answer] = []
        self._stop = False
        self._runner: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        self._runner = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        due = time.monotonic()
        while not self._stop:
            task = asyncio.ensure_future(self._one())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
            due = max(due + 1 / self.rate, time.monotonic() - 0.5)  # behind by more than 0.5 s: no catching up
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _one(self) -> None:
        assert self._session is not None
        sent, began = time.time(), time.perf_counter()
        try:
            async with self._session.get(self.url, headers={"Host": self.host}) as r:
                body = await r.text()
                answer = Answer(sent, time.perf_counter() - began, r.status, body, r.headers.get("Retry-After", ""))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            answer = Answer(sent, time.perf_counter() - began, 0, repr(exc), "")
        self.answers.append(answer)

    async def stop(self) -> None:
        self._stop = True
        if self._runner is not None:
            await self._runner
        await asyncio.gather(*list(self._pending))
        if self._session is not None:
            await self._session.close()

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.sent < end]


# -- readings ------------------------------------------------------------------------------------------------


def wrk(url: str, host: str, seconds: float, connections: int = 16) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms), non-2xx and socket errors of one wrk run. Blocking: use a thread."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-H", f"Host: {host}", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    figures = {"rps": float(rps.group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        figures[f"p{pct}"] = float(m.group(1)) * UNITS[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = float(non2xx.group(1)) if non2xx else 0.0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return figures


def container_cpu(container_id: str) -> float | None:
    """CPU seconds a container has used, from its cgroup (v1 cpuacct or v2 cpu.stat); None if not found."""
    root = Path("/sys/fs/cgroup")
    for path in (
        root / "cpuacct" / "docker" / container_id / "cpuacct.usage",
        root / "cpuacct" / "system.slice" / f"docker-{container_id}.scope" / "cpuacct.usage",
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text()) / 1e9
    for folder in (root / "docker" / container_id, root / "system.slice" / f"docker-{container_id}.scope"):
        with contextlib.suppress(OSError, ValueError):
            for line in (folder / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
    return None


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (psutil reads /proc/PID/stat)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def caddy_pid(d: Deployment) -> int | None:
    path = d.dir / "state" / "system" / "caddy.pid"
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def events(d: Deployment, site_name: str) -> list[dict[str, Any]]:
    """The site's event rows with their time (unix seconds), oldest first."""
    db = sqlite3.connect(d.dir / "state" / "system" / "dialup.db", timeout=5)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(
            "SELECT ts, kind, cause, duration_ms, detail FROM events WHERE site = ? ORDER BY id", (site_name,)
        )
        return [dict(r) for r in rows]
    finally:
        db.close()


async def row(d: Deployment, name: str) -> dict[str, Any]:
    return (await d.status())[name]


async def get(session: aiohttp.ClientSession, d: Deployment, host: str, path: str = "/") -> tuple[int, str]:
    async with session.get(d.url + path, headers={"Host": host}) as r:
        return r.status, await r.text()


def percentiles(values: list[float]) -> list[float]:
    """Percentiles 0, 1, ..., 100 of a long series, in ms (the JSON stays small)."""
    return [percentile(values, p) * 1000 for p in range(101)] if values else []


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def pct(values: list[float], p: float) -> float:
    """A percentile in ms (NaN when there is none: the table shows it, and the run goes on)."""
    return percentile(values, p) * 1000 if values else float("nan")


# -- 1. throughput on one instance and on two ----------------------------------------------------------------


def host_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores; not idle nor waiting on I/O)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


async def _round(url: str, host: str, seconds: float, containers: list[str]) -> dict[str, float]:
    """One wrk run, with the cores the containers and the whole machine used over it."""
    before = [container_cpu(c) or 0.0 for c in containers]
    busy, began = host_busy(), time.monotonic()
    figures = await asyncio.to_thread(wrk, url, host, seconds)
    wall = time.monotonic() - began
    after = [container_cpu(c) or 0.0 for c in containers]
    figures["cores"] = (sum(after) - sum(before)) / wall
    for i, (a, b) in enumerate(zip(after, before, strict=True)):
        figures[f"cpu{i}"] = a - b  # each container's CPU seconds
    figures["host"] = (host_busy() - busy) / wall
    return figures


async def throughput(client: docker.DockerClient, quick: bool) -> tuple[list[Figure], dict[str, list[float]]]:
    rounds, seconds = (1, 3.0) if quick else (3, 8.0)
    path = f"/work?ms={WORK_MS}"
    scalable = {
        "strategy": "scalable",
        "scale_threshold": 600,  # 10 requests/s per instance
        "scale_window": "10s",  # panic window 6 s
        "scale_down_delay": "10m",  # stays at 2 while measured
    }
    sites = [site("one", PYAPP, strategy="persistent", **APP), site("api", PYAPP, **APP, **scalable)]
    d = Deployment(client, sites, thresholds=QUIET)
    runs: dict[str, list[dict[str, float]]] = {"one": [], "api": []}
    try:
        await d.start()
        await d.wait_routed("one")
        await d.wait_routed("api")
        # Warm up: 30 requests/s (3 times the threshold) until the second instance answers through Caddy.
        warm = Load(d, "api.test", path, rate=30)
        warm.start()
        try:

            async def both() -> bool:
                tokens = {a.body.split()[0] for a in warm.answers if a.status == 200}
                return len(tokens) == 2 and (await row(d, "api"))["instances"] == 2

            await until(both, 40, "the scalable site on 2 instances")
        finally:
            await warm.stop()
        for name in ("one", "api"):  # each path once before the rounds (connections, caches)
            await asyncio.to_thread(wrk, d.url + path, f"{name}.test", 1.0)
        busy, began = host_busy(), time.monotonic()
        await asyncio.sleep(2.0)
        background = (host_busy() - busy) / (time.monotonic() - began)  # other work on this shared machine
        ids = {name: d.container(name).id for name in ("one", "api", "api.2")}
        containers = {"one": [ids["one"]], "api": [ids["api"], ids["api.2"]]}
        for _ in range(rounds):  # alternated: drift on a shared machine hits both alike
            for name in ("one", "api"):
                runs[name].append(await _round(d.url + path, f"{name}.test", seconds, containers[name]))
            assert (await row(d, "api"))["instances"] == 2, "the scalable site went back to one instance"
        tightened = [e for e in events(d, "(host)") if e["kind"] == "limits_tightened"]
    finally:
        await asyncio.to_thread(d.close)

    def mean(rows: list[dict[str, float]], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    one, two = runs["one"], runs["api"]
    base = "1 instance (a persistent site)"
    figures = [
        Figure("CPU-bound app, 2 instances: req/s", mean(two, "rps"), "req/s", mean(one, "rps"), base),
        Figure("CPU-bound app, 2 instances: p50", mean(two, "p50"), "ms", mean(one, "p50"), base),
        Figure("CPU-bound app, 2 instances: p99", mean(two, "p99"), "ms", mean(one, "p99"), base),
        Figure(
            "CPU-bound app: non-2xx and socket errors",
            sum(r["non2xx"] + r["socket_errors"] for r in two + one),
            "responses",
            0,
            "must be",
        ),
        Figure("  cores the app's containers used", mean(two, "cores"), "cores", mean(one, "cores"), base),
        Figure("  cores the whole machine used meanwhile", mean(two, "host"), "cores", mean(one, "host"), base),
        Figure("  cores busy before the rounds, with no load of ours", background, "cores"),
    ]
    if (total := sum(r["cpu0"] + r["cpu1"] for r in two)) > 0:
        share = 100 * sum(r["cpu1"] for r in two) / total
        figures.append(Figure("  2 instances: the second's share of their CPU", share, "%", 50, "even"))
    figures.append(Figure("  congestion responses during it", len(tightened), "events", 0, "none: turned off"))
    samples = {"wrk p99, 1 instance": [r["p99"] for r in one], "wrk p99, 2 instances": [r["p99"] for r in two]}
    return figures, samples


# -- 2. time from a load step to the second instance serving -------------------------------------------------

STEP_THRESHOLD = 120  # requests/min per instance (2/s)
STEP_RATE = 10.0  # requests/s offered from t0: 5 times the threshold


@dataclass
class StepRun:
    serving: float  # s from t0 to the first 200 from the second instance
    status: float | None  # s from t0 until `status` shows 2 instances
    detected: float | None  # s from t0 to the start of the second instance's container (from its start event)
    started_ms: float | None  # that start's duration (event log)
    cold: float  # s: the lazy twin's first request through Caddy
    cold_start_ms: float | None  # the lazy twin's start, in the event log
    reason: str
    failed: int  # non-200 answers during the step


async def _step_once(client: docker.DockerClient) -> StepRun:
    scalable = {"strategy": "scalable", "scale_threshold": STEP_THRESHOLD, "scale_down_delay": "10m"}
    d = Deployment(
        client, [site("api", PYAPP, **APP, **scalable), site("cold", PYAPP, **APP)], thresholds=QUIET
    )  # the default scale_window: 60 s stable, 6 s panic
    try:
        await d.start()
        await d.wait_routed("api")
        async with aiohttp.ClientSession() as s:
            status, first = await get(s, d, "api.test", "/instance")
            assert status == 200, first
            await asyncio.sleep(1.0)  # the go-live's start and probes settle
            began = time.perf_counter()
            status, body = await get(s, d, "cold.test", "/instance")
            cold = time.perf_counter() - began
            assert status == 200, body
        await asyncio.sleep(1.0)
        load = Load(d, "api.test", "/instance", rate=STEP_RATE)
        t0 = time.time()
        load.start()
        shown: float | None = None
        try:
            deadline = time.monotonic() + 40
            while True:
                second = [a for a in load.answers if a.status == 200 and a.body != first]
                if second:
                    break
                if shown is None and (await row(d, "api"))["instances"] == 2:
                    shown = time.time() - t0
                if time.monotonic() > deadline:
                    raise AssertionError("no answer from a second instance within 40 s")
                await asyncio.sleep(0.05)
        finally:
            await load.stop()
        serving = min(a.sent + a.latency for a in second) - t0
        replica = [e for e in events(d, "api.2") if e["kind"] == "start"]
        twin = [e for e in events(d, "cold") if e["kind"] == "start"]
        scaled = [e for e in events(d, "api") if e["kind"] == "scaled_up"]
        detected = started_ms = None
        if replica:
            started_ms = replica[0]["duration_ms"]
            detected = replica[0]["ts"] - (started_ms or 0.0) / 1000 - t0
        return StepRun(
            serving=serving,
            status=shown,
            detected=detected,
            started_ms=started_ms,
            cold=cold,
            cold_start_ms=twin[0]["duration_ms"] if twin else None,
            reason=scaled[0]["detail"] if scaled else "",
            failed=sum(1 for a in load.answers if a.status != 200),
        )
    finally:
        await asyncio.to_thread(d.close)


async def scale_up_time(client: docker.DockerClient, quick: bool) -> tuple[list[Figure], dict[str, list[float]]]:
    reps = 2 if quick else 5
    runs = [await _step_once(client) for _ in range(reps)]
    cold = median([r.cold for r in runs]) * 1000
    base = "a lazy twin's cold start"
    known = [r for r in runs if r.detected is not None]
    panic = 2 * STEP_THRESHOLD * 6.0 / (STEP_RATE * 60)  # when the 6 s window's rate passes twice the threshold
    stable = STEP_THRESHOLD * 60.0 / (STEP_RATE * 60)  # ... and when the 60 s window's passes the threshold
    figures = [
        Figure(
            "load step to the second instance serving, median",
            median([r.serving for r in runs]) * 1000,
            "ms",
            cold,
            base,
        ),
        Figure(
            "load step to the second instance serving, worst",
            max(r.serving for r in runs) * 1000,
            "ms",
            max(r.cold for r in runs) * 1000,
            base,
        ),
        Figure(
            "  step to its container's start (detection), median",
            median([r.detected for r in known if r.detected]) * 1000,
            "ms",
            panic * 1000,
            "the panic window's rate passing twice the threshold",
        ),
        Figure(
            "  its container's start (event log), median",
            median([r.started_ms for r in known if r.started_ms is not None]),
            "ms",
            median([r.cold_start_ms for r in runs if r.cold_start_ms is not None]),
            "the lazy twin's start (event log)",
        ),
        Figure(
            "  step to status showing 2 instances, median",
            median([r.status for r in runs if r.status is not None]) * 1000,
            "ms",
        ),
        Figure("  stable window (60 s) passing the threshold (computed)", stable * 1000, "ms"),
        Figure("  failed requests during the steps", sum(r.failed for r in runs), "requests", 0, "must be"),
    ]
    panicked = sum(1 for r in runs if "panic window" in r.reason)
    figures.append(Figure("  scale-ups the panic window decided", panicked, "runs", len(runs), "all runs"))
    samples = {
        "step to second instance serving": [r.serving * 1000 for r in runs],
        "lazy twin cold start": [r.cold * 1000 for r in runs],
    }
    return figures, samples


# -- 3. the limiter's accuracy -------------------------------------------------------------------------------

LIMIT, BURST, OFFERED, NEAR, UNDER_LIMIT = 20.0, 20, 100.0, 30.0, 16.0


def held_spans(rows: list[dict[str, Any]], end: float) -> list[tuple[float, float]]:
    """When the site's route was on the limiter (unix seconds), from its rate_limited / rate_limit_lifted events."""
    spans, since = [], None
    for e in rows:
        if e["kind"] == "rate_limited" and since is None:
            since = e["ts"]
        elif e["kind"] == "rate_limit_lifted" and since is not None:
            spans.append((since, e["ts"]))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def inside(t: float, spans: list[tuple[float, float]], margin: float = 0.0) -> bool:
    """Whether t is in one of the spans, `margin` seconds from either end (negative: the spans widened)."""
    return any(a + margin <= t < b - margin for a, b in spans)


@dataclass
class Offered:
    rate: float  # requests/s offered from idle
    t0: float  # unix seconds
    end: float
    answers: list[Answer]
    rows: list[dict[str, Any]]  # the site's rate_limited / rate_limit_lifted events
    refused: int  # as `status` counts them


async def _offer(d: Deployment, name: str, rate: float, seconds: float) -> Offered:
    """`rate` requests/s for `seconds` at a running limited site that had none for the last 10 s or more."""
    load = Load(d, f"{name}.test", "/", rate=rate, connections=16)
    t0 = time.time()
    load.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await load.stop()
    end = max(a.sent for a in load.answers) + 1 / rate  # when the next one would have been sent
    rows = [e for e in events(d, name) if e["kind"] in ("rate_limited", "rate_limit_lifted")]
    return Offered(rate, t0, end, load.answers, rows, (await row(d, name))["refused"] or 0)


def _accuracy(o: Offered, full: bool) -> list[Figure]:
    label = f"limiter, {o.rate:g}/s offered"
    engaged = [e["ts"] for e in o.rows if e["kind"] == "rate_limited" and e["ts"] < o.end]
    assert engaged, f"{label}: the limiter never engaged"
    first, last = engaged[0], engaged[-1]
    spans = held_spans(o.rows, o.end)
    statuses = Counter(a.status for a in o.answers)
    ok = [a for a in o.answers if a.status == 200]
    direct = [a for a in ok if not inside(a.sent, spans)]

    def allowed_after(ts: float) -> float:
        return sum(1 for a in ok if a.sent >= ts + 1.0) / (o.end - ts - 1.0)

    switches = sum(1 for e in o.rows if e["ts"] < o.end)
    lifted = (o.end - first) - sum(max(0.0, min(b, o.end) - max(a, first)) for a, b in spans)
    wants = f"the limit: {LIMIT:g}/s"
    others = sum(n for k, n in statuses.items() if k not in (200, 429))
    figures = [
        Figure(f"{label}: allowed req/s from 1 s after rate_limited", allowed_after(first), "req/s", LIMIT, wants),
    ]
    if o.end - last >= 3.0:  # (the bucket alone, once the route stays on it)
        figures.append(
            Figure(
                "  allowed req/s from 1 s after the last switch to the limiter",
                allowed_after(last),
                "req/s",
                LIMIT,
                wants,
            )
        )
    figures += [
        Figure(f"{label}: route switches during the load", switches, "switches", 1, "one"),
        Figure("  time on the container after the first switch", max(0.0, lifted) * 1000, "ms", 0, "none"),
        Figure(f"{label}: 200s answered directly by Caddy", 100 * len(direct) / max(1, len(ok)), "% of the 200s"),
        Figure(
            "  200s answered directly",
            len(direct),
            "requests",
            (first - o.t0) * o.rate,
            "what was offered before the first switch",
        ),
        Figure(
            "  load start to the first rate_limited event",
            (first - o.t0) * 1000,
            "ms",
            2 * LIMIT / o.rate * 1000,
            "the 2 s window's rate passing the limit",
        ),
    ]
    if full:
        retry = [int(a.retry_after) for a in o.answers if a.status == 429 and a.retry_after.isdigit()]
        figures += [
            Figure(
                "  200s over the whole load",
                len(ok),
                "requests",
                LIMIT * (o.end - o.t0) + BURST,
                "the limit over the same time, and the burst",
            ),
            Figure("  429s", statuses[429], "responses"),
            Figure(
                "  429s without a Retry-After of 1 s or more",
                statuses[429] - sum(1 for r in retry if r >= 1),
                "responses",
                0,
                "must be",
            ),
            Figure("  refused, as status counts them", o.refused, "requests", statuses[429], "429s received"),
        ]
    figures.append(Figure("  other answers (neither 200 nor 429)", others, "responses", 0, "must be"))
    return figures


def _under(o: Offered) -> list[Figure]:
    """A site offered less than its limit: Caddy should serve it all, with the route never moved."""
    label = f"limiter, {o.rate:g}/s offered (under the limit)"
    statuses = Counter(a.status for a in o.answers)
    engaged = [e for e in o.rows if e["kind"] == "rate_limited"]
    figures = [
        Figure(f"{label}: route switches", len(o.rows), "switches", 0, "none: under its limit"),
        Figure("  429s", statuses[429], "responses", 0, "none"),
        Figure(
            "  other answers (neither 200 nor 429)",
            sum(n for k, n in statuses.items() if k not in (200, 429)),
            "responses",
            0,
            "must be",
        ),
    ]
    if engaged and (m := re.match(r"([\d.]+) requests/s", engaged[0]["detail"])):
        figures.append(
            Figure("  the rate the limiter saw when it engaged", float(m.group(1)), "req/s", o.rate, "offered")
        )
    return figures


async def limiter_accuracy(client: docker.DockerClient, quick: bool) -> tuple[list[Figure], dict[str, list[float]]]:
    """The limit offered OFFERED/s at one site; then, at the same time, NEAR/s (just over it) at a twin and
    UNDER_LIMIT/s (under it) at another; each from idle."""
    seconds = 6.0 if quick else 10.0
    limited = {"rate_limit": {"rate": f"{LIMIT:g}/s", "burst": BURST}, "idle_timeout": "off"}
    names = ("lim", "near", "under")
    d = Deployment(client, [site(name, PYAPP, **APP, **limited) for name in names], thresholds=QUIET)
    try:
        await d.start()
        async with aiohttp.ClientSession() as s:
            for name in names:
                status, body = await get(s, d, f"{name}.test")  # started by this request, then kept
                assert status == 200, body
        for name in names:
            await d.wait_routed(name)
        await asyncio.sleep(3.0)  # the first requests out of the 2 s window
        over = await _offer(d, "lim", OFFERED, seconds)
        near, under = await asyncio.gather(_offer(d, "near", NEAR, seconds), _offer(d, "under", UNDER_LIMIT, seconds))
    finally:
        await asyncio.to_thread(d.close)
    return _accuracy(over, True) + _accuracy(near, False) + _under(under), {}


# -- 4. what a request through the limiter costs ---------------------------------------------------------------

COST_LIMIT, COST_BURST, UNDER, OVER = 50.0, 10, 25.0, 60.0


@dataclass
class Window:
    start: float  # unix seconds
    end: float
    activator_cpu: float  # seconds
    caddy_cpu: float


async def _window(d: Deployment, seconds: float) -> Window:
    assert d.proc is not None
    caddy = caddy_pid(d)
    cpu0, caddy0, t0 = process_cpu(d.proc.pid), process_cpu(caddy) if caddy else 0.0, time.time()
    await asyncio.sleep(seconds)
    cpu1, caddy1, t1 = process_cpu(d.proc.pid), process_cpu(caddy) if caddy else 0.0, time.time()
    return Window(t0, t1, cpu1 - cpu0, caddy1 - caddy0)


async def limiter_cost(client: docker.DockerClient, quick: bool) -> tuple[list[Figure], dict[str, list[float]]]:
    rounds, seconds = (1, 4.0) if quick else (2, 8.0)
    limited = {"rate_limit": {"rate": f"{COST_LIMIT:g}/s", "burst": COST_BURST}, "idle_timeout": "off"}
    d = Deployment(client, [site("cost", PYAPP, **APP, **limited)], thresholds=QUIET)
    direct: list[Window] = []
    held: list[Window] = []
    try:
        await d.start()
        async with aiohttp.ClientSession() as s:
            status, body = await get(s, d, "cost.test")
            assert status == 200, body
        await d.wait_routed("cost")
        load = Load(d, "cost.test", "/", rate=UNDER, connections=8)
        load.start()
        try:
            for _ in range(rounds):
                load.rate = UNDER

                async def lifted() -> bool:
                    return not (await row(d, "cost"))["rate_limited"] and not d.route_on_activator("cost")

                await until(lifted, 30, "the route back on the container")
                await asyncio.sleep(2.0)
                direct.append(await _window(d, seconds))
                load.rate = OVER

                async def engaged() -> bool:
                    return bool((await row(d, "cost"))["rate_limited"]) and d.route_on_activator("cost")

                await until(engaged, 20, "the route on the activator's limiter")
                await asyncio.sleep(3.0)  # the burst spent, the load steady through the limiter
                held.append(await _window(d, seconds))
            await asyncio.sleep(2.0)  # the last window's answers
        finally:
            await load.stop()
        rows = [e for e in events(d, "cost") if e["kind"] in ("rate_limited", "rate_limit_lifted")]
    finally:
        await asyncio.to_thread(d.close)
    spans = held_spans(rows, time.time())

    def answers(windows: list[Window], limited: bool) -> list[Answer]:
        """The windows' answers sent while the route was on the limiter (or, not limited: on the container), 0.2 s
        or more from a switch."""
        found = [a for w in windows for a in load.between(w.start, w.end)]
        if limited:
            return [a for a in found if inside(a.sent, spans, 0.2)]
        return [a for a in found if not inside(a.sent, spans, -0.2)]

    through, straight = answers(held, True), answers(direct, False)
    over = [a.latency for a in through if a.status == 200]
    under = [a.latency for a in straight if a.status == 200]
    all_held = [a for w in held for a in load.between(w.start, w.end)]
    all_direct = [a for w in direct for a in load.between(w.start, w.end)]
    base = f"Caddy directly, {UNDER:g}/s (under the limit)"

    def per_1000(cpu: float, requests: int) -> float:
        """CPU ms per 1,000 requests over the windows."""
        return 1000 * 1000 * cpu / max(1, requests)

    statuses = Counter(a.status for a in all_held + all_direct)
    figures = [
        Figure(
            f"through the limiter ({OVER:g}/s offered, {COST_LIMIT:g}/s limit): p50 of 200s",
            pct(over, 50),
            "ms",
            pct(under, 50),
            base,
        ),
        Figure("through the limiter: p99 of 200s", pct(over, 99), "ms", pct(under, 99), base),
        Figure(
            "activator CPU per 1,000 requests, limiting",
            per_1000(sum(w.activator_cpu for w in held), len(all_held)),
            "ms",
            per_1000(sum(w.activator_cpu for w in direct), len(all_direct)),
            base,
        ),
        Figure(
            "  Caddy CPU per 1,000 requests, limiting",
            per_1000(sum(w.caddy_cpu for w in held), len(all_held)),
            "ms",
            per_1000(sum(w.caddy_cpu for w in direct), len(all_direct)),
            base,
        ),
        Figure("  200s timed through the limiter", len(over), "requests", len(under), base),
        Figure(
            "  allowed share while limiting",
            100 * len(over) / max(1, len(through)),
            "%",
            100 * COST_LIMIT / OVER,
            "limit / offered",
        ),
        Figure(
            "  requests of the limiting windows sent while on the container",
            len(all_held) - len(through),
            "requests",
            0,
            "none",
        ),
        Figure(
            "  requests of the baseline windows sent while on the limiter",
            len(all_direct) - len(straight),
            "requests",
            0,
            "must be",
        ),
        Figure(
            "  failed requests", sum(n for k, n in statuses.items() if k not in (200, 429)), "requests", 0, "must be"
        ),
        Figure(
            "  route switches (rate_limited, rate_limit_lifted)",
            len(rows),
            "switches",
            2 * rounds - 1,
            "one per change of rate",
        ),
    ]
    samples = {
        "through the limiter (percentiles)": percentiles(over),
        "Caddy directly (percentiles)": percentiles(under),
    }
    return figures, samples


# -- the scenario --------------------------------------------------------------------------------------------


async def scaling(quick: bool) -> Result:
    client = docker.from_env()
    figures: list[Figure] = []
    samples: dict[str, list[float]] = {}
    try:
        for part in (throughput, scale_up_time, limiter_accuracy, limiter_cost):
            began = time.monotonic()
            f, s = await part(client, quick)
            print(f"  scaling: {part.__name__} {time.monotonic() - began:.0f} s", flush=True)
            figures += f
            samples.update(s)
    finally:
        client.close()
    return Result(
        "scaling",
        "CPU-bound app on 2 instances vs 1; load step to a second instance vs a cold start; "
        "rate limit accuracy; a request through the limiter vs Caddy directly",
        figures,
        samples,
        unit="ms",
    )
