"""Resource governance with the real Docker Engine: the memory budget, evictions, limits, OOM kills."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import Any

import aiohttp
import docker

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
        site("plain", images["static"], network="plain"),
        site(
            "tuned",
            images["static"],
            kind="node",
            memory="96MiB",
            cpus=0.75,
            cpu_shares=300,
            cap_add=["NET_BIND_SERVICE"],
            read_only=True,
        ),
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
    assert tuned["NetworkMode"].startswith("container:") and not tuned["PortBindings"]  # its holder publishes
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


async def test_a_site_past_its_limit_is_oom_killed_and_the_others_answer_throughout(deploy, images):
    sites = [site("hog", images["pyapp"], kind="static", idle_timeout="off"), site("calm", images["static"])]
    d = await deploy(sites)
    async with aiohttp.ClientSession() as s:
        assert (await fetch(s, d, "hog.test"))[0] == 200
        await d.wait_routed("hog")
        assert await fetch(s, d, "calm.test") == (200, STATIC_BODY)
        await d.wait_routed("calm")
        stop = asyncio.Event()

        async def steady() -> int:
            answered = 0
            while not stop.is_set():
                assert await fetch(s, d, "calm.test") == (200, STATIC_BODY)
                answered += 1
            return answered

        client = asyncio.ensure_future(steady())
        with contextlib.suppress(aiohttp.ClientError):
            async with s.get(d.url + "/alloc?mb=200", headers={"Host": "hog.test"}) as r:
                await r.read()  # the app cannot answer this one: it is killed while allocating

        async def oom_event() -> list[dict[str, Any]]:
            return [e for e in await d.events("hog") if e["kind"] == "oom"]

        (oom, *_) = await until(oom_event, 20, "the OOM kill to be reported")
        assert "more memory than its limit" in oom["detail"]
        stop.set()
        assert await client > 0
        assert await fetch(s, d, "calm.test") == (200, STATIC_BODY)
    assert not [e for e in await d.events("calm") if e["kind"] in ("oom", "crash")]


async def test_memory_critical_evicts_idle_sites_and_never_persistent_ones(deploy, images):
    sites = [
        site("old", images["static"], idle_timeout="off"),
        site("new", images["static"], idle_timeout="off"),
        site("keep", images["static"], strategy="persistent"),
    ]
    d = await deploy(sites, monitor_interval="200ms")
    async with aiohttp.ClientSession() as s:
        for name in ("old", "new"):
            assert await fetch(s, d, f"{name}.test") == (200, STATIC_BODY)
            await d.wait_routed(name)  # the route switch is a Caddy reload: let it finish before the next request
    await until(lambda: docker_status(d.container("keep")) == "running", 20, "the persistent site")
    # Restart the activator with thresholds far below this machine's use, so that the host reads as critical
    # from its first tick. (No request goes through Caddy while it evicts: each eviction reloads Caddy's
    # config, which on Caddy 2.6 may reset a client's connection; see the README's known limits.)
    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0
    critical = {"memory_warning": 0.5, "memory_critical": 1}
    d.config_path.write_text(d.render(sites, **{**d.server, "thresholds": critical}))
    await d.start()

    async def both_evicted() -> set[tuple[str, str]]:
        found = {(e["site"], e["cause"]) for e in await d.events() if e["kind"] == "evicted"}
        return found if len(found) >= 2 else set()

    assert await until(both_evicted, 20, "two evictions") == {("old", "memory critical"), ("new", "memory critical")}
    assert [docker_status(d.container(n)) for n in ("old", "new", "keep")] == ["exited", "exited", "running"]
    crossings = [e for e in await d.events("(host)") if e["kind"] == "threshold" and e["cause"] == "memory"]
    assert len(crossings) == 1 and "above 1 (critical)" in crossings[0]["detail"]


async def test_a_container_near_its_limit_for_a_while_is_reported_once(deploy, images):
    sites = [site("heavy", images["pyapp"], kind="static", idle_timeout="off")]
    d = await deploy(sites, monitor_interval="200ms", thresholds={"container_memory_warning": 40, "sustained": 2})
    async with aiohttp.ClientSession() as s:
        assert (await fetch(s, d, "heavy.test"))[0] == 200
        await d.wait_routed("heavy")
        assert await fetch(s, d, "heavy.test", "/alloc?mb=30") == (200, "holding 30 MiB\n")  # ~40 of 64 MiB

    async def reported() -> list[dict[str, Any]]:
        return [e for e in await d.events("heavy") if e["kind"] == "near_limit"]

    (event,) = await until(reported, 20, "the near-limit event")
    assert "of its 64 MiB limit" in event["detail"]
    ticks = await d.metric("dialup_monitor_tick_seconds_count")

    async def three_more_ticks() -> bool:
        return await d.metric("dialup_monitor_tick_seconds_count") >= ticks + 3

    await until(three_more_ticks, 20, "three more monitor ticks")
    assert len(await reported()) == 1  # one event for the episode, not one per tick
    assert (await d.status())["heavy"]["memory_used"] > 30 * MiB


async def test_storage_warning_deletes_only_the_projects_own_old_files_and_unused_images(
    deploy, images, docker_client, tmp_path
):
    d = await deploy(
        [site("web", images["static"])], start=False, monitor_interval="200ms", thresholds={"storage_warning": 0.1},
        backups={"repository": str(tmp_path / "repo"), "password_file": str(tmp_path / "key")},
    )  # fmt: skip
    temp = d.dir / "state" / "temp"
    (temp / "uploads").mkdir(parents=True)  # (temp/builds is the deploys' own: cleared at startup, else left)
    old, fresh, outside = temp / "uploads" / "old.tar", temp / "fresh.tar", d.dir / "state" / "keep.tar"
    for path in (old, fresh, outside):
        path.write_bytes(b"x" * 1000)
    two_days_ago = time.time() - 2 * 86400
    for path in (old, outside):
        os.utime(path, (two_days_ago, two_days_ago))
    ours = _image(docker_client, tmp_path / "ours", {"dialup.deployment": d.name}, f"{d.name}-leftover:1")
    foreign = _image(docker_client, tmp_path / "foreign", {"somebody.else": "1"}, f"{d.name}-foreign:1")
    # A release's image (kept for a rollback) is the deployer's to remove (keep_releases), never this response's.
    release = _image(
        docker_client, tmp_path / "release", {"dialup.deployment": d.name, "dialup.release": "r1"}, f"{d.name}-r:1"
    )
    try:
        await d.start()

        async def freed() -> list[dict[str, Any]]:
            return [e for e in await d.events("(host)") if e["kind"] == "storage_freed"]

        event = (await until(freed, 20, "the storage response"))[0]
        assert "deleted 1 temp files" in event["detail"] and "1 unused images" in event["detail"]

        async def backups_trimmed() -> list[str]:  # (in the background: its prune can take a while)
            return [e["detail"] for e in await freed() if e["detail"].startswith("backups: ")]

        # The backups' retention too: applied now, or after the startup's first backups if they still run.
        (said, *_) = await until(backups_trimmed, 60, "the backups' retention")
        assert said in (
            "backups: retention applied, space pruned",
            "backups: a backup runs, retention is applied after it",
        )
        assert not old.exists() and fresh.exists() and outside.exists()
        names = {tag for image in docker_client.images.list() for tag in image.tags}
        assert f"{d.name}-leftover:1" not in names and f"{d.name}-foreign:1" in names and f"{d.name}-r:1" in names
        assert images["static"] in names  # in use by a site: never
    finally:
        for image in (ours, foreign, release):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(image, force=True)


def _image(client: Any, context: Any, labels: dict[str, str], tag: str) -> str:
    context.mkdir()
    (context / "file").write_text(tag)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY file /file\n")
    image, _ = client.images.build(path=str(context), labels=labels, tag=tag, rm=True)
    return str(image.id)


async def test_sustained_cpu_warning_lowers_the_weight_and_tightens_the_limits_of_non_persistent_sites(deploy, images):
    limit = {"rate_limit": "20/s"}
    sites = [
        site("lazy", images["static"], idle_timeout="off", **limit),
        site("home", images["static"], strategy="persistent", **limit),
        site("free", images["static"], idle_timeout="off"),  # no limit: none under congestion either
    ]
    d = await deploy(sites, monitor_interval="200ms", thresholds={"cpu_warning": 0.01, "sustained": 2})
    async with aiohttp.ClientSession() as s:
        assert await fetch(s, d, "lazy.test") == (200, STATIC_BODY)
    busy = threading.Event()

    def burn() -> None:  # keep one core busy, so the CPU reads above its (tiny) warning level
        while not busy.is_set():
            sum(range(10_000))

    burner = threading.Thread(target=burn, daemon=True)
    burner.start()
    try:

        async def lowered() -> bool:
            return any(e["kind"] == "cpu_weights_lowered" for e in await d.events("(host)"))

        await until(lowered, 20, "the CPU response")
    finally:
        busy.set()
        burner.join()
    assert _host_config(d, "lazy")["CpuShares"] == 128
    assert _host_config(d, "home")["CpuShares"] == 512
    # The same congestion tightens rate limits: the lazy site's is halved, the persistent one's kept.
    tightened = [e["detail"] for e in await d.events("(host)") if e["kind"] == "limits_tightened"]
    assert len(tightened) == 1 and tightened[0].endswith("; lazy"), tightened
    status = await d.status()
    assert status["lazy"]["rate_limit"] == "10/s (burst 10)" and status["home"]["rate_limit"] == "20/s (burst 20)"
    assert status["free"]["rate_limit"] is None
