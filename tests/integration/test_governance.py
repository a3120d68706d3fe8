"""Resource governance with the real Docker Engine: the memory budget, evictions, limits, OOM kills."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, started_at, until

STATIC_BODY = "static test site\n"
MiB = 1024 * 1024


async def fetch(session: aiohttp.ClientSession, d: Any, host: str, path: str = "/") -> tuple[int, str]:
    async with session.get(d.url + path, headers={"Host": host}) as r:
        return r.status, await r.text()


def evictions(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["site"], e["detail"]) for e in events if e["kind"] == "evicted"]


async def test_the_least_recently_used_idle_site_makes_room(deploy, images):
    sites = [site(n, images["static"], idle_timeout="off") for n in ("a", "b", "c")]
    d = await deploy(sites, budget={"memory": "160MiB"})
    async with aiohttp.ClientSession() as s:
        for name in ("a", "b"):
            assert await fetch(s, d, f"{name}.test") == (200, STATIC_BODY)
            await d.wait_routed(name)
        assert await fetch(s, d, "c.test") == (200, STATIC_BODY)
        assert [docker_status(d.container(n)) for n in "abc"] == ["exited", "running", "running"]
        assert await fetch(s, d, "a.test") == (200, STATIC_BODY)
        assert [docker_status(d.container(n)) for n in "abc"] == ["running", "exited", "running"]
    assert evictions(await d.events()) == [("a", "made room for c"), ("b", "made room for a")]
    status = await d.status()
    assert sum(row["memory_limit"] for row in status.values() if row["state"] == "running") <= 160 * MiB


async def test_a_site_that_cannot_fit_gets_memory_budget_full_and_nothing_is_evicted(deploy, images):
    sites = [site("big", images["static"], kind="astro", strategy="persistent"), site("small", images["static"])]
    d = await deploy(sites, budget={"memory": "160MiB"})
    await until(lambda: docker_status(d.container("big")) == "running", 20, "the persistent site")
    big_started = started_at(d.container("big"))
    since = time.time()
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "small.test"}) as r:
        body = await r.text()
        assert r.status == 503 and r.headers["Retry-After"].isdigit()
    assert "memory budget full" in body
    assert d.starts("small", since) == 0
    assert started_at(d.container("big")) == big_started and docker_status(d.container("big")) == "running"
    assert evictions(await d.events()) == []


async def test_a_site_with_a_request_in_flight_is_not_evicted_an_idle_one_is(deploy, images):
    sites = [
        site("busy", images["pyapp"], kind="static", idle_timeout="off"),
        site("idle", images["static"], idle_timeout="off"),
        site("new", images["static"], idle_timeout="off"),
    ]
    d = await deploy(sites, budget={"memory": "160MiB"})
    async with aiohttp.ClientSession() as s:
        assert (await fetch(s, d, "busy.test"))[0] == 200  # busy is now the least recently used ...
        await d.wait_routed("busy")
        assert await fetch(s, d, "idle.test") == (200, STATIC_BODY)
        await d.wait_routed("idle")
        slow = asyncio.ensure_future(fetch(s, d, "busy.test", "/slow?s=3"))  # ... but has a request open

        async def in_flight() -> bool:
            return (await d.status())["busy"]["in_flight"] >= 1

        await until(in_flight, 10, "the slow request to be in flight")
        assert await fetch(s, d, "new.test") == (200, STATIC_BODY)
        assert await slow == (200, "slept 3\n")
    assert evictions(await d.events()) == [("idle", "made room for new")]
    assert docker_status(d.container("busy")) == "running"


async def test_containers_carry_the_configured_limits_and_hardening(deploy, images):
    sites = [
        site("plain", images["static"]),
        site("tuned", images["static"], kind="node", memory="96MiB", cpus=0.75, cpu_shares=300,
             cap_add=["NET_BIND_SERVICE"], read_only=True),
    ]
    d = await deploy(sites)
    host = {name: _host_config(d, name) for name in ("plain", "tuned")}
    plain, tuned = host["plain"], host["tuned"]
    assert (plain["Memory"], plain["MemorySwap"]) == (64 * MiB, 64 * MiB)
    assert (plain["NanoCpus"], plain["CpuShares"], plain["PidsLimit"]) == (250_000_000, 512, 100)
    assert plain["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 1024}]
    assert plain["SecurityOpt"] == ["no-new-privileges"] and plain["CapDrop"] == ["ALL"]
    assert plain["Init"] is True and plain["ReadonlyRootfs"] is False
    assert plain["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
    assert (tuned["Memory"], tuned["MemorySwap"]) == (96 * MiB, 96 * MiB)
    assert (tuned["NanoCpus"], tuned["CpuShares"]) == (750_000_000, 300)
    assert tuned["CapAdd"] == ["NET_BIND_SERVICE"] and tuned["ReadonlyRootfs"] is True
    assert "/tmp" in tuned["Tmpfs"]
    async with aiohttp.ClientSession() as s:  # and a read-only site still serves
        assert await fetch(s, d, "tuned.test") == (200, STATIC_BODY)


def _host_config(d: Any, name: str) -> dict[str, Any]:
    container = d.container(name)
    container.reload()
    return dict(container.attrs["HostConfig"])
