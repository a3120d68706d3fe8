"""Sites isolated from each other on the deployment's own bridge network, with the real Docker Engine and Caddy:
a site cannot open a connection to another site, while Caddy reaches both and a site still reaches out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, until

STATIC_BODY = "static test site\n"
ICC = "com.docker.network.bridge.enable_icc"
OUTBOUND_BODY = "reached the host\n"


async def get(d: Any, host: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
        return r.status, await r.text()


def address(container: Any, network: str) -> str:
    container.reload()
    return str(container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"])


async def wget(container: Any, url: str) -> tuple[int, str]:
    """busybox wget from inside the container, given 2 s (a thread: the test's own server answers meanwhile).
    Debian's static busybox 1.35 wget crashes (SIGSEGV) with its own `-T`, so busybox's `timeout` bounds it."""
    command = ["/bin/busybox", "timeout", "2", "/bin/busybox", "wget", "-qO-", url]
    result = await asyncio.to_thread(container.exec_run, command)
    return result.exit_code, result.output.decode(errors="replace")


@asynccontextmanager
async def listening(host: str) -> AsyncIterator[int]:
    """A tiny HTTP server on host (the bridge's gateway: an address of this machine), on a free port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = OUTBOUND_BODY.encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_sites_cannot_reach_each_other_while_caddy_reaches_both_and_they_reach_out(deploy, images, docker_client):
    d = await deploy([site("a", images["static"]), site("b", images["static"], network="plain")])
    name = f"dialup-{d.name}"
    network = docker_client.networks.get(name)
    assert network.attrs["Driver"] == "bridge" and network.attrs["Options"].get(ICC) == "false"
    assert network.attrs["Labels"] == {"dialup.deployment": d.name}
    # Both started through Caddy, and both answer through it.
    assert await get(d, "a.test") == (200, STATIC_BODY)
    assert await get(d, "b.test") == (200, STATIC_BODY)
    await d.wait_routed("a")
    await d.wait_routed("b")
    # Nothing of the deployment is on Docker's default bridge: only on its own network (a's container is in its
    # holder's namespace, so it is where the holder is).
    for made in (d.holder("a"), d.container("b")):
        made.reload()
        assert set(made.attrs["NetworkSettings"]["Networks"]) == {name}, made.name
    assert d.container("a").attrs["HostConfig"]["NetworkMode"] == f"container:{d.holder('a').id}"
    a_ip, b_ip = address(d.holder("a"), name), address(d.container("b"), name)

    # Each site answers on its own address (so what fails below is the network, not the app) ...
    assert await wget(d.container("b"), f"http://{b_ip}:8080/") == (0, STATIC_BODY)
    assert await wget(d.container("a"), f"http://{a_ip}:8080/") == (0, STATIC_BODY)
    # ... and neither can open a connection to the other.
    a_to_b, b_to_a = await asyncio.gather(
        wget(d.container("a"), f"http://{b_ip}:8080/"), wget(d.container("b"), f"http://{a_ip}:8080/")
    )
    assert a_to_b[0] != 0 and STATIC_BODY not in a_to_b[1], a_to_b
    assert b_to_a[0] != 0 and STATIC_BODY not in b_to_a[1], b_to_a

    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    # Nor through the host: their ports are published on 127.0.0.1 only, which in a container is its own.
    for source, target in ((d.container("a"), d.container("b")), (d.container("b"), d.holder("a"))):
        port = target.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        code, out = await wget(source, f"http://{gateway}:{port}/")
        assert code != 0 and STATIC_BODY not in out, (target.name, code, out)

    # Going out still works: to this machine, at the bridge's gateway address (no traffic leaves the machine).
    async with listening(gateway) as port:
        assert await wget(d.container("a"), f"http://{gateway}:{port}/") == (0, OUTBOUND_BODY)
        assert await wget(d.container("b"), f"http://{gateway}:{port}/") == (0, OUTBOUND_BODY)
    # And beyond it, through the bridge's masquerading, which the network leaves on (Docker's default).
    assert network.attrs["Options"].get("com.docker.network.bridge.enable_ip_masquerade", "true") == "true"

    # Caddy still reaches both, warm.
    assert await get(d, "a.test") == (200, STATIC_BODY)
    assert await get(d, "b.test") == (200, STATIC_BODY)


async def test_down_leaves_the_network_and_the_next_up_adopts_it(deploy, images, docker_client):
    d = await deploy([site("a", images["static"], strategy="persistent")])
    await until(lambda: docker_status(d.container("a")) == "running", 20, "the persistent site")
    network_id = docker_client.networks.get(f"dialup-{d.name}").id
    assert d.proc is not None
    d.proc.terminate()
    assert await asyncio.to_thread(d.proc.wait, 15) == 0

    result = await asyncio.to_thread(d.command, "down")
    assert result.returncode == 0, result.stderr
    assert docker_status(d.holder("a")) == "exited"
    assert docker_client.networks.get(f"dialup-{d.name}").id == network_id  # left: cheap, and nothing to redo

    await d.start()
    await until(lambda: docker_status(d.container("a")) == "running", 20, "the persistent site, again")
    assert docker_client.networks.get(f"dialup-{d.name}").id == network_id
    assert await get(d, "a.test") == (200, STATIC_BODY)
