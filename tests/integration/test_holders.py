"""Network holders: each site's container joins a long-lived holder that owns its namespace and its port."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import docker_status, site, started_at, until

STATIC_BODY = "static test site\n"
FAST = {"reaper_interval": "100ms"}
MiB = 1 << 20


async def fetch(session: aiohttp.ClientSession, d: Any, host: str) -> tuple[int, str]:
    async with session.get(d.url, headers={"Host": host}) as r:
        return r.status, await r.text()


async def state(d: Any, name: str) -> str:
    return str((await d.status())[name]["state"])


async def kinds(d: Any, name: str) -> list[str]:
    return [e["kind"] for e in await d.events(name)]


class SteadyClient:
    """A few clients sending GETs back to back through Caddy until stopped.

    A connection Caddy resets before answering is tried again, as a browser does: Caddy 2.6 can reset
    connections that arrive while it reloads its config (README: known limits), which every route switch
    does. Those are counted apart; every answer, and any other failure, is kept in `results`."""

    def __init__(self, d: Any, host: str, workers: int = 4) -> None:
        self.d, self.host, self.workers = d, host, workers
        self.results: Counter[tuple[int, str]] = Counter()
        self.resets = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SteadyClient:
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.workers)]
        return self

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as s:
            while not self._stop.is_set():
                try:
                    self.results[await fetch(s, self.d, self.host)] += 1
                except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError):
                    self.resets += 1  # no answer at all: sent again on the next turn
                except aiohttp.ClientError as exc:  # a cut-short answer: a failure, never hidden
                    self.results[(0, type(exc).__name__)] += 1

    async def until_answers(self, more: int, limit: float = 20) -> None:
        """Until `more` further answers of any kind came in."""
        target = sum(self.results.values()) + more
        await until(lambda: sum(self.results.values()) >= target, limit, f"{more} more answers")

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def test_the_site_joins_its_holder_which_owns_the_port_and_is_hardened(deploy, images):
    d = await deploy([site("blog", images["static"])])
    holder, container = d.holder("blog"), d.container("blog")
    assert docker_status(holder) == "running" and docker_status(container) == "created"  # held before any start
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
    holder.reload()
    container.reload()
    assert container.attrs["HostConfig"]["NetworkMode"] == f"container:{holder.id}"
    assert not container.attrs["HostConfig"]["PortBindings"] and not container.attrs["NetworkSettings"]["Ports"]
    binding = holder.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    row = (await d.status())["blog"]
    assert row["host_port"] == int(binding["HostPort"]) and row["holder_id"] == holder.id[:12]
    assert holder.labels["dialup.role"] == "holder" and holder.labels["dialup.site"] == "blog"
    host = holder.attrs["HostConfig"]
    assert host["Init"] is True and host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and 0 < host["PidsLimit"] <= 8
    assert host["Memory"] == host["MemorySwap"] == 16 * MiB
    # It counts in the budget at its real size, read from its cgroup: well under a MiB of its 16 MiB limit.
    budget = (await d.admin_json("/status"))["budget"]
    assert 0 < budget["holders"] < 4 * MiB
    assert budget["used"] == 64 * MiB + budget["holders"]


async def test_stop_pause_and_eviction_leave_the_holder_running(deploy, images):
    sites = [
        site("nap", images["static"], pause_after="500ms", idle_timeout="off"),
        site("off", images["static"], idle_timeout="500ms"),
        site("next", images["static"], idle_timeout="off"),
    ]
    # Room for two static sites (and the holders) but not three: the third evicts the paused one.
    d = await deploy(sites, budget={"memory": "140MiB"}, **FAST)
    holders = {name: d.holder(name).id for name in ("nap", "off", "next")}
    async with aiohttp.ClientSession() as s:
        for name in ("nap", "off"):
            assert await fetch(s, d, f"{name}.test") == (200, STATIC_BODY)
            await d.wait_routed(name)
        await until(lambda: docker_status(d.container("nap")) == "paused", 10, "nap to pause")
        await until(lambda: docker_status(d.container("off")) == "exited", 10, "off to stop")
        assert await fetch(s, d, "off.test") == (200, STATIC_BODY)
        await d.wait_routed("off")
        assert await fetch(s, d, "next.test") == (200, STATIC_BODY)  # evicts nap: paused sites go first
    assert "evicted" in await kinds(d, "nap")
    assert docker_status(d.container("nap")) == "exited"
    for name, holder_id in holders.items():
        assert d.holder(name).id == holder_id and docker_status(d.holder(name)) == "running", name


async def test_a_killed_holder_is_brought_back_and_the_next_requests_get_the_site(deploy, images):
    d = await deploy([site("blog", images["static"], idle_timeout="off")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    first = (await d.status())["blog"]
    await asyncio.to_thread(d.holder("blog").kill)
    # Sent at once, before the activator may have heard of it: Caddy's dials to the closed port fall through
    # to the activator, which holds them while the holder comes back and the site starts inside it.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        results = await asyncio.gather(*(fetch(s, d, "blog.test") for _ in range(20)))
        assert results == [(200, STATIC_BODY)] * 20
        for _ in range(20):
            assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
    assert docker_status(d.holder("blog")) == "running" and docker_status(d.container("blog")) == "running"
    row = (await d.status())["blog"]
    assert row["state"] == "running" and row["crashes"] == 0 and row["starts"] == first["starts"] + 1
    # Stopped (cut off in the dead namespace), then started again inside the holder's new one.
    assert row["holder_id"] == first["holder_id"] and row["host_port"] != first["host_port"]
    assert (await kinds(d, "blog")).count("holder_died") == 1


async def test_a_removed_holder_is_created_anew_and_the_site_container_replaced_to_join_it(deploy, images):
    d = await deploy([site("blog", images["static"], idle_timeout="off")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
        await d.wait_routed("blog")
        old_holder, old_container = d.holder("blog").id, d.container("blog").id
        await asyncio.to_thread(d.holder("blog").remove, force=True)
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
    holder, container = d.holder("blog"), d.container("blog")
    assert holder.id != old_holder and container.id != old_container
    assert container.attrs["HostConfig"]["NetworkMode"] == f"container:{holder.id}"
    assert {"holder_died", "holder_created", "replaced"} <= set(await kinds(d, "blog"))


async def test_a_persistent_site_whose_holder_is_killed_is_back_by_itself(deploy, images):
    d = await deploy([site("home", images["static"], strategy="persistent")], **FAST)
    await until(lambda: docker_status(d.container("home")) == "running", 20, "the persistent site")
    await d.wait_routed("home")
    first = started_at(d.container("home"))
    await asyncio.to_thread(d.holder("home").kill)

    async def back() -> bool:
        row = (await d.status())["home"]
        return row["state"] == "running" and row["routed"] and started_at(d.container("home")) != first

    await until(back, 20, "the site to be started again inside its restarted holder, with no request")
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "home.test") == (200, STATIC_BODY)
    assert (await d.status())["home"]["crashes"] == 0


async def test_a_holder_killed_during_a_cold_start_costs_the_held_requests_nothing(deploy, images):
    d = await deploy([site("slow", images["slow"], env={"BOOT_DELAY": "1"}, idle_timeout="off")], **FAST)
    async with aiohttp.ClientSession() as s:
        held = [asyncio.create_task(fetch(s, d, "slow.test")) for _ in range(5)]

        async def starting() -> bool:
            return await state(d, "slow") == "starting" and docker_status(d.container("slow")) == "running"

        await until(starting, 10, "the cold start to be under way")
        await asyncio.to_thread(d.holder("slow").kill)
        results = await asyncio.gather(*held)
    assert {status for status, _ in results} == {200}, results
    assert docker_status(d.holder("slow")) == "running"
    assert "holder_died" in await kinds(d, "slow") and (await d.status())["slow"]["state"] == "running"


async def _has(d: Any, name: str, kind: str) -> bool:
    return kind in await kinds(d, name)


@pytest.mark.parametrize("network", ["holder", "plain"], indirect=True)
async def test_an_external_stop_under_a_steady_client_gets_every_answer_from_the_site(deploy, images, network):
    # An app that finishes the responses it is writing when stopped: what is cut short by the app itself is
    # no stale route's doing (busybox httpd alone dies mid-response).
    d = await deploy([site("ext", images["graceful"], idle_timeout="off")], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "ext.test") == (200, STATIC_BODY)
    await d.wait_routed("ext")
    since = time.time() - 1
    async with SteadyClient(d, "ext.test") as client:
        await client.until_answers(20)
        await asyncio.to_thread(d.container("ext").stop, timeout=5)
        await until(lambda: d.starts("ext", since) >= 2, 15, "the site to be started again by a request")
        await client.until_answers(50)
    assert set(client.results) == {(200, STATIC_BODY)}, client.results
    # Resets come only from Caddy's two reloads (route to the activator, route back): a handful at most.
    assert client.resets <= 2 * client.workers, client.resets
    assert "stopped" in await kinds(d, "ext")
    assert (await d.status())["ext"]["crashes"] == 0


async def test_requests_during_a_slow_shutdown_from_outside_wait_for_it_and_get_the_site(deploy, images):
    # The app refuses connections for 2 s after its SIGTERM before it exits: requests meanwhile are held.
    app = site("ext", images["graceful"], idle_timeout="off", env={"STOP_DELAY": "2"})
    d = await deploy([app], **FAST)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "ext.test") == (200, STATIC_BODY)
    await d.wait_routed("ext")
    since = time.time()
    async with SteadyClient(d, "ext.test") as client:
        await client.until_answers(20)
        stopping = asyncio.create_task(asyncio.to_thread(d.container("ext").stop, timeout=10))
        await until(lambda: d.starts("ext", since) >= 1, 20, "the site to be started again after its exit")
        await stopping
        await client.until_answers(50)
    assert set(client.results) == {(200, STATIC_BODY)}, client.results
    assert client.resets <= 2 * client.workers, client.resets
    assert (await d.status())["ext"]["crashes"] == 0


async def test_holders_are_adopted_and_removed_with_their_site(deploy, images, docker_client):
    sites = [site("stay", images["static"], idle_timeout="off"), site("gone", images["static"])]
    sites.append(site("flat", images["static"]))
    d = await deploy(sites)
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "stay.test") == (200, STATIC_BODY)
    await d.wait_routed("stay")
    kept = {"holder": d.holder("stay").id, "started": started_at(d.container("stay"))}
    gone_holder, flat_holder = d.holder("gone").id, d.holder("flat").id

    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0
    # "gone" leaves the config; "flat" switches to its own network.
    sites = [sites[0], site("flat", images["static"], network="plain")]
    d.config_path.write_text(d.render(sites, **d.server))
    await d.start()

    ids = {c.id for c in docker_client.containers.list(all=True, filters={"label": f"dialup.deployment={d.name}"})}
    assert gone_holder not in ids and flat_holder not in ids
    assert d.holder("stay").id == kept["holder"] and started_at(d.container("stay")) == kept["started"]
    flat = d.container("flat")
    flat.reload()
    assert not flat.attrs["HostConfig"]["NetworkMode"].startswith("container:")
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "stay.test") == (200, STATIC_BODY)
        assert await fetch(s, d, "flat.test") == (200, STATIC_BODY)


async def test_a_holder_that_died_while_the_activator_was_down_is_restarted_and_its_site_answers(deploy, images):
    d = await deploy([site("blog", images["static"], idle_timeout="off")])
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
    await d.wait_routed("blog")
    d.kill()  # SIGKILL: nothing tidied up
    await asyncio.to_thread(d.holder("blog").kill)
    await d.start()
    # The cut-off container was stopped at adoption; the holder runs again; a request starts the site in it.
    assert docker_status(d.holder("blog")) == "running" and docker_status(d.container("blog")) == "exited"
    assert (await d.status())["blog"]["state"] == "stopped"
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "blog.test") == (200, STATIC_BODY)
