"""reloads: what a route switch costs everyone else, with dialup's defaults against what a switch cost before
(a full reload of Caddy's config, as with Caddy 2.6), in the same run.

Every start, wake, pause, stop and eviction switches a site's route. With the defaults a switch writes the
site's route file, which Caddy reads at each request: no reload. The baseline makes each switch a full reload
of Caddy's config as well (the bench changes a server setting back and forth through the admin API right
after the activator's switch), with Caddy binding its own listener (`pass_listener = false`), the sysctl
`net.ipv4.tcp_migrate_req` at 0 (`migrate_connections = false`, and set by the bench) and
`stream_close_delay = "off"`: what route switches cost with Caddy 2.6. A third configuration makes each switch
a reload with dialup's defaults otherwise (its listening socket, tcp_migrate_req 1, stream_close_delay): what
a config reload still costs. Two costs, each measured in all three:

1. new connections: clients open a new connection for every request to a running site while other sites'
   routes switch; counted: requests, failures (resets, errors, non-200);
2. WebSockets: open to a running site, then other sites are started and stopped; counted: how many still echo.

The switches are real ones, made by the activator: a request for a stopped site starts it (the activator
routes Caddy to the container), then `docker stop` from outside (the activator sees it die and routes Caddy
back to itself). The count is the activator's own (`dialup_route_changes`). New connections are made without
aiohttp's silent second try of a GET whose connection closed before the answer: that is what is counted.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import docker

from activator.proxy.sysctl import MIGRATE_REQ
from bench.report import Figure, Result
from tests.integration.harness import Deployment, site, until

NGINX = "dialup-test-nginx:latest"  # the traffic target: busybox httpd would be the bottleneck (DESIGN)
PYAPP = "dialup-test-pyapp:latest"  # its /ws is a WebSocket echo
STATIC = "dialup-test-static:latest"  # the sites switched: busybox, the fastest cold start
SWITCHED = ("b0", "b1")
BASELINE = "each switch a reload, as with Caddy 2.6"
# The [caddy] keys of each configuration; the baseline's sysctl is also set to 0 by the bench (below).
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    # Each switch a reload too, with what dialup does against what reloads cost (its own listening socket with
    # TCP_DEFER_ACCEPT, tcp_migrate_req, stream_close_delay): what a reload still costs, for the README.
    "reloading": {},
    "baseline": {"migrate_connections": False, "stream_close_delay": "off", "pass_listener": False},
}
RELOADING = frozenset({"reloading", "baseline"})  # the configurations whose switches each reload Caddy too
ROUTE_CHANGES = "dialup_route_changes_total"


@dataclass(frozen=True)
class Plan:
    clients: int  # tasks opening a new connection per request
    switches: int  # route switches while they run
    sockets: int  # WebSockets held open
    cycles: int  # cold start + stop of another site (two switches each) while they are open
    limit: float  # seconds, at most, for each part's switching


FULL = Plan(clients=10, switches=100, sockets=20, cycles=20, limit=75.0)
QUICK = Plan(clients=4, switches=20, sockets=10, cycles=5, limit=20.0)


@dataclass
class Outcome:
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    switches: float = 0.0  # during the new-connection part
    seconds: float = 0.0
    alive: int = 0  # WebSockets that still echo after the switches
    ws_switches: float = 0.0
    sysctl_put_back: int = 0  # times tcp_migrate_req was found changed by another process, and put back

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rate(self) -> float:
        return 100 * self.failed / self.requests if self.requests else 0.0


# -- the sysctl ---------------------------------------------------------------------------------------------


def _read_sysctl() -> str | None:
    try:
        return MIGRATE_REQ.read_text().strip()
    except FileNotFoundError:
        return None


def _write_sysctl(value: str, path: Path = MIGRATE_REQ) -> None:
    try:
        path.write_text(value + "\n")
    except PermissionError as exc:
        raise SystemExit(f"bench reloads: setting {path} needs root (the baseline turns it off): {exc}") from exc


async def _hold_sysctl(value: str, out: Outcome, stop: asyncio.Event) -> None:
    """Keep the sysctl at the configuration's value while it runs. Any `dialup up` started on this machine
    meanwhile (by another test suite: each integration test starts one) sets it to 1, which would make the
    baseline measure the fix; it is put back within 10 ms, and counted."""
    while not stop.is_set():
        if _read_sysctl() != value:
            _write_sysctl(value)
            out.sysctl_put_back += 1
        await asyncio.sleep(0.01)


# -- a route switch, made by the activator -------------------------------------------------------------------


def _stop_container(d: Deployment, name: str) -> None:
    d.container(name).stop(timeout=5)


async def _on_activator(d: Deployment, name: str) -> bool:
    return d.route_on_activator(name) and bool((await d.status())[name]["state"] == "stopped")


async def _reload(d: Deployment, switch: int) -> None:
    """A full reload of Caddy's config, as a route switch was before route files: a server setting changed."""
    connector = aiohttp.UnixConnector(path=str(d.caddy_socket))
    async with aiohttp.ClientSession(connector=connector) as s:
        url = "http://localhost/config/apps/http/servers/dialup/idle_timeout"
        async with s.patch(url, json=f"{120 + switch % 2}s") as r:
            assert r.status == 200, await r.text()


async def _cycle(d: Deployment, session: aiohttp.ClientSession, name: str, reload: bool) -> None:
    """A cold start by a request through Caddy (the activator then routes Caddy to the container), then a stop
    from outside (the activator routes Caddy back to itself): two switches, each a reload."""
    for attempt in range(3):
        try:
            async with session.get(d.url + "/", headers={"Host": f"{name}.test"}) as r:
                await r.read()
                if r.status == 200:
                    break
        except aiohttp.ClientError:
            pass
        if attempt == 2:
            raise AssertionError(f"the switched site {name} did not answer (log: {d.log_path})")
    await d.wait_routed(name)
    if reload:
        await _reload(d, 0)
    await asyncio.to_thread(_stop_container, d, name)
    await until(lambda: _on_activator(d, name), 10, f"the route of {name} back on the activator")
    if reload:
        await _reload(d, 1)


async def _switch(d: Deployment, switches: int, limit: float, reload: bool) -> float:
    """Cycles until `switches` route switches are made or `limit` seconds pass; the switches the activator made."""
    before = await d.metric(ROUTE_CHANGES)
    deadline = time.monotonic() + limit
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        i = 0
        while await d.metric(ROUTE_CHANGES) - before < switches and time.monotonic() < deadline:
            await _cycle(d, session, SWITCHED[i % len(SWITCHED)], reload)
            i += 1
    return await d.metric(ROUTE_CHANGES) - before


# -- 1: new connections --------------------------------------------------------------------------------------


def failure_kind(exc: BaseException) -> str:
    """What a failed request met, in a few words (shared by the scenarios that count failures)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        # A connection queued on a listener that the reload closed is reset: mostly seen by connect already.
        return f"connect failed ({errno.errorcode.get(exc.os_error.errno or 0, str(exc.os_error))})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected before the response"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"socket error ({errno.errorcode.get(exc.errno or 0, str(exc))})"
    if isinstance(exc, TimeoutError):
        return "timeout (10 s)"
    return type(exc).__name__


async def _new_connections(d: Deployment, plan: Plan, out: Outcome, reload: bool) -> None:
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # a new connection for every request
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as s:
        # aiohttp sends a GET (or PUT, DELETE...) again, unseen, when the server closes a connection before
        # answering: that would hide exactly what is measured here. (A POST it never sends again.)
        s._retry_connection = False

        async def client(method: str) -> None:
            while not stop.is_set():
                out.requests += 1
                try:
                    headers = {"Host": "web.test", "Connection": "close"}
                    async with s.request(method, d.url + "/", headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            out.failures[f"HTTP {r.status}"] += 1
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    out.failures[failure_kind(exc)] += 1

        # Half of the clients ask with GET, half with HEAD: both are answered by nginx's static page.
        tasks = [asyncio.create_task(client("GET" if i % 2 else "HEAD")) for i in range(plan.clients)]
        began = time.monotonic()
        try:
            out.switches = await _switch(d, plan.switches, plan.limit, reload)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        out.seconds = time.monotonic() - began


# -- 2: WebSockets -------------------------------------------------------------------------------------------


async def _echoes(ws: aiohttp.ClientWebSocketResponse, text: str) -> bool:
    try:
        await ws.send_str(text)
        msg = await asyncio.wait_for(ws.receive(), 5)
    except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError):
        return False
    return msg.type == aiohttp.WSMsgType.TEXT and msg.data == text


async def _websockets(d: Deployment, plan: Plan, out: Outcome, reload: bool) -> None:
    async with aiohttp.ClientSession() as s:
        sockets = []
        try:
            for _ in range(plan.sockets):
                sockets.append(await s.ws_connect(d.url + "/ws", headers={"Host": "chat.test"}))
            opened = await asyncio.gather(*(_echoes(ws, f"before {i}") for i, ws in enumerate(sockets)))
            assert all(opened), f"WebSockets that did not echo before any switch: {opened.count(False)}"
            out.ws_switches = await _switch(d, 2 * plan.cycles, plan.limit, reload)
            after = await asyncio.gather(*(_echoes(ws, f"after {i}") for i, ws in enumerate(sockets)))
            out.alive = sum(after)
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# -- one configuration ---------------------------------------------------------------------------------------


async def _run(client: docker.DockerClient, label: str, plan: Plan) -> Outcome:
    sites = [
        site("web", NGINX, idle_timeout="off", cpus=1.0),
        site("chat", PYAPP, kind="node", idle_timeout="off"),
        *(site(name, STATIC, idle_timeout="off") for name in SWITCHED),
    ]
    d = Deployment(client, sites, caddy=CONFIGS[label])
    out = Outcome()
    stop = asyncio.Event()
    watch: asyncio.Future[None] | None = None
    try:
        await d.start()
        migrate = (await d.admin_json("/status"))["caddy"]["tcp_migrate_req"]
        assert (migrate == "on") == (label != "baseline"), f"{label}: tcp_migrate_req is {migrate!r}"
        async with aiohttp.ClientSession() as s:
            for name in ("web", "chat"):  # running and routed: their traffic never touches the activator
                async with s.get(d.url + "/", headers={"Host": f"{name}.test"}) as r:
                    assert r.status == 200, await r.text()
                await d.wait_routed(name)
        if _read_sysctl() is not None:
            watch = asyncio.ensure_future(_hold_sysctl("0" if label == "baseline" else "1", out, stop))
        await _new_connections(d, plan, out, label in RELOADING)
        await _websockets(d, plan, out, label in RELOADING)
    finally:
        stop.set()
        if watch is not None:
            await watch
        await asyncio.to_thread(d.close)
    return out


def _summary(label: str, out: Outcome) -> str:
    kinds = ", ".join(f"{kind}: {n}" for kind, n in out.failures.most_common()) or "none"
    line = (
        f"reloads, {label}: {out.requests} new connections in {out.seconds:.1f} s over {out.switches:g} switches, "
        f"failed {out.failed} ({kinds}); WebSockets alive {out.alive} after {out.ws_switches:g}"
    )
    if out.sysctl_put_back:
        line += f"; tcp_migrate_req changed by another process and put back {out.sysctl_put_back} times"
    return line


async def reloads(quick: bool) -> Result:
    plan = QUICK if quick else FULL
    previous = _read_sysctl()
    client = docker.from_env()
    outcomes: dict[str, Outcome] = {}
    try:
        for label in CONFIGS:
            if label == "baseline" and previous is not None:
                _write_sysctl("0")  # dialup's own start-up leaves it alone: migrate_connections = false
            outcomes[label] = await _run(client, label, plan)
            print(_summary(label, outcomes[label]), flush=True)
    finally:
        if previous is not None:
            _write_sysctl(previous)  # the machine's value before the bench
        client.close()
    new, old, mid = outcomes["defaults"], outcomes["baseline"], outcomes["reloading"]

    figures = [
        Figure("new connections: requests", new.requests, "requests", old.requests, BASELINE),
        Figure("new connections: failures", new.failed, "requests", old.failed, BASELINE),
        Figure("new connections: failure rate", new.rate, "%", old.rate, BASELINE),
        Figure("new connections: per second", new.per_second, "req/s", old.per_second, BASELINE),
        *(
            Figure(f"  failed: {kind}", new.failures[kind], "requests", old.failures[kind], BASELINE)
            for kind in sorted(set(new.failures) | set(old.failures))
        ),
        Figure("new connections: route switches", new.switches, "switches", old.switches, BASELINE),
        Figure(f"WebSockets alive (of {plan.sockets})", new.alive, "sockets", old.alive, BASELINE),
        Figure("WebSockets: route switches", new.ws_switches, "switches", old.ws_switches, BASELINE),
        Figure("tcp_migrate_req put back", new.sysctl_put_back, "times", old.sysctl_put_back, BASELINE),
        # What a reload still costs with dialup's defaults (its listener, tcp_migrate_req, stream_close_delay).
        Figure("if each switch reloaded: failures", mid.failed, "requests", old.failed, BASELINE),
        Figure("if each switch reloaded: WebSockets alive", mid.alive, "sockets", old.alive, BASELINE),
    ]
    note = " (this kernel has no tcp_migrate_req: both ran without it)" if previous is None else ""
    return Result(
        "reloads",
        f"{plan.clients} clients (a new connection a request) to a running site during {plan.switches} route switches "
        f"of others, then {plan.sockets} WebSockets during {2 * plan.cycles}: defaults vs {BASELINE}{note}",
        figures,
        {
            "failed new connections, defaults": [new.failed],
            "failed new connections, baseline": [old.failed],
            "WebSockets alive, defaults": [new.alive],
            "WebSockets alive, baseline": [old.alive],
        },
        unit="count",
    )
