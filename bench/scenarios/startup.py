"""cold-start, slow-boot and wake: from a request through Caddy to the last byte, against the engine's floor."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import docker
import psutil

from bench.cold_start import bare_docker_start, through_activator
from bench.lifecycle import wake_once
from bench.report import Figure, Result, latency_figures
from tests.integration.harness import Deployment, docker_status, site, until

STATIC = "dialup-test-static:latest"
MiB = 1 << 20
SLOW = "dialup-test-slow:latest"


async def _paired(
    image: str, runs: int, env: dict[str, str] | None = None, networks: tuple[str, ...] = ("holder",)
) -> tuple[dict[str, tuple[list[float], list[float]]], dict[str, float]]:
    """Per network mode, (through the activator, bare docker start) for the same container: one site per mode
    in one deployment, every measurement alternated with the others, after one warm-up of each. With the
    holder path: also what the holder costs in memory (MiB)."""
    client = docker.from_env()
    extra = {"env": env} if env else {}
    sites = [site(net, image, idle_timeout="off", start_timeout="60s", network=net, **extra) for net in networks]
    d = Deployment(client, sites)
    try:
        await d.start()
        out: dict[str, tuple[list[float], list[float]]] = {net: ([], []) for net in networks}
        async with aiohttp.ClientSession() as session:
            expected = {}
            for net in networks:
                async with session.get(d.url, headers={"Host": f"{net}.test"}) as r:
                    expected[net] = await r.text()
                    assert r.status == 200, expected[net]
                await bare_docker_start(d, session, expected[net], net)
            for _ in range(runs):
                for net in networks:
                    activator, bare = out[net]
                    activator.append(await through_activator(d, session, expected[net], net))
                    bare.append(await bare_docker_start(d, session, expected[net], net))
        return out, (await _holder_costs(d) if "holder" in networks else {})
    finally:
        d.close()
        client.close()


async def _holder_costs(d: Deployment) -> dict[str, float]:
    """What a holder costs besides its start: its container's memory (its cgroup, as the budget counts it)
    and the docker-proxy process that publishes its port (outside any container: the engine's share)."""
    budget = (await d.admin_json("/status"))["budget"]
    holder = d.holder("holder")
    holder.reload()
    port = holder.ports["8080/tcp"][0]["HostPort"]
    private = await asyncio.to_thread(_proxy_private_bytes, port)
    return {"holder container": budget["holders"] / MiB, "its docker-proxy, private": private / MiB}


def _proxy_private_bytes(host_port: str) -> int:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "docker-proxy" and host_port in (proc.info["cmdline"] or []):
            rollup = Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines()
            return sum(int(line.split()[1]) * 1024 for line in rollup if line.startswith("Private_"))
    return 0


async def cold_start(quick: bool) -> Result:
    paired, costs = await _paired(STATIC, 5 if quick else 30, networks=("holder", "plain"))
    (holder, holder_bare), (plain, plain_bare) = paired["holder"], paired["plain"]
    figures = [
        *latency_figures("cold start, holder", holder, holder_bare, "bare docker start into a running holder"),
        *latency_figures("cold start, plain", plain, plain_bare, "bare docker start, own network"),
        *latency_figures("holder path", holder, plain, "plain path through Caddy"),
        *(Figure(f"memory: {name}", value, "MiB") for name, value in costs.items()),
    ]
    return Result(
        "cold-start",
        "stopped static site: request through Caddy to last byte, network = holder and plain side by side, "
        "each vs its docker SDK start polled every 1 ms",
        figures,
        {
            "holder: through Caddy + activator": [x * 1000 for x in holder],
            "holder: bare docker start": [x * 1000 for x in holder_bare],
            "plain: through Caddy + activator": [x * 1000 for x in plain],
            "plain: bare docker start": [x * 1000 for x in plain_bare],
        },
    )


async def slow_boot(quick: bool) -> Result:
    paired, _ = await _paired(SLOW, 3 if quick else 10, env={"BOOT_DELAY": "1"})
    activator, bare = paired["holder"]
    return Result(
        "slow-boot",
        "an app that sleeps 1 s before listening: the activator's overhead over the app's own boot",
        latency_figures("slow boot", activator, bare, "bare docker start"),
        {"through Caddy + activator": [x * 1000 for x in activator], "bare docker start": [x * 1000 for x in bare]},
    )


async def _bare_unpause(client: docker.DockerClient, label: str, runs: int) -> list[float]:
    """The floor: a container of the same image, not the activator's, unpaused with the SDK until it answers."""
    container = await asyncio.to_thread(
        client.containers.run,
        STATIC,
        detach=True,
        init=True,
        mem_limit="64m",
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={"dialup.deployment": label},
    )
    try:
        await asyncio.to_thread(container.reload)
        port = container.ports["8080/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}/"
        times = []
        async with aiohttp.ClientSession() as session:
            await until(lambda: _answers(session, url), 10, "the baseline container")
            for _ in range(runs):
                await asyncio.to_thread(container.pause)
                began = time.perf_counter()
                await asyncio.to_thread(container.unpause)
                while not await _answers(session, url):  # noqa: ASYNC110 - the floor polls every millisecond
                    await asyncio.sleep(0.001)
                times.append(time.perf_counter() - began)
        return times
    finally:
        await asyncio.to_thread(container.remove, force=True)


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as r:
            await r.read()
            return r.status == 200
    except (aiohttp.ClientError, OSError):
        return False


async def wake(quick: bool) -> Result:
    runs = 5 if quick else 30
    client = docker.from_env()
    d = Deployment(client, [site("nap", STATIC, pause_after="1s", idle_timeout="off")], reaper_interval="100ms")
    try:
        await d.start()
        async with aiohttp.ClientSession() as session:
            async with session.get(d.url, headers={"Host": "nap.test"}) as r:
                assert r.status == 200
            woken = [await wake_once(d, session) for _ in range(runs)]
        assert docker_status(d.container("nap")) in ("running", "paused")
        bare = await _bare_unpause(client, d.name, runs)
    finally:
        d.close()
        client.close()
    return Result(
        "wake",
        "paused site: request through Caddy to last byte, vs docker SDK unpause of a twin container until it answers",
        latency_figures("wake", woken, bare, "bare unpause"),
        {"through Caddy + activator": [x * 1000 for x in woken], "bare unpause": [x * 1000 for x in bare]},
    )
