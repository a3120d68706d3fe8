"""`dialup reload` and SIGHUP against the real Docker and Caddy: sites added, removed and changed without a
restart; a bad file, or a change only a restart can make, changes nothing."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp

from tests.integration.harness import Deployment, until


async def status_of(d: Deployment, host: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": host}) as r:
        await r.read()
        return r.status


async def test_reload_adds_changes_and_removes_sites_and_refuses_a_bad_file(
    deploy: Any, images: dict[str, str]
) -> None:
    def site(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "hosts": [f"{name}.localhost"], "image": images["static"], "port": 8080, **more}

    d: Deployment = await deploy([site("a"), site("b")])
    assert await status_of(d, "a.localhost") == 200 and await status_of(d, "b.localhost") == 200
    await d.wait_routed("a")
    a_before, b_before = d.container("a").id, d.container("b").id

    d.config_path.write_text(d.render([site("a", memory="96MiB"), site("c")], **d.server))
    done = await asyncio.to_thread(d.command, "reload")
    assert done.returncode == 0, done.stderr
    assert "added: c; removed: b; changed: a (swapped)" in done.stdout
    assert await status_of(d, "b.localhost") == 404  # Caddy no longer routes it
    # b's container and holder are gone.
    assert not [name for name in d.container_names() if name.startswith(f"dialup-{d.name}-b")]
    assert b_before not in {c["Id"] for c in d.client.api.containers(all=True)}
    assert await status_of(d, "c.localhost") == 200  # made by the reload, cold-started by this request
    a_now = d.container("a")
    assert a_now.id != a_before and a_now.attrs["HostConfig"]["Memory"] == 96 * 2**20
    assert await status_of(d, "a.localhost") == 200
    assert set(await d.status()) == {"a", "c"}

    good = d.config_path.read_text()
    d.config_path.write_text(good.replace('memory = "96MiB"', 'memory = "lots"'))
    bad = await asyncio.to_thread(d.command, "reload")
    assert bad.returncode == 2 and "sites[0].memory = 'lots'" in bad.stderr, bad.stderr
    sites = [site("a", memory="96MiB"), site("c")]
    d.config_path.write_text(d.render(sites, **{**d.server, "monitor_interval": "7s"}))
    refused = await asyncio.to_thread(d.command, "reload")
    assert refused.returncode == 1 and "[server] monitor_interval changed: that needs a restart" in refused.stderr
    assert set(await d.status()) == {"a", "c"} and await status_of(d, "c.localhost") == 200  # nothing changed

    c_before = d.container("c").id
    settings = {**d.server, "budget": {"memory": "1GiB"}}
    d.config_path.write_text(d.render([site("a", memory="96MiB"), site("c", idle_timeout="9m")], **settings))
    retuned = await asyncio.to_thread(d.command, "reload")
    assert retuned.returncode == 0 and "changed: c (settings)" in retuned.stdout, retuned.stdout + retuned.stderr
    assert d.container("c").id == c_before and (await d.admin_json("/status"))["budget"]["total"] == 1 << 30

    # A change that fails (the new container exits at once) is named, leaves the site as it was, and is tried
    # again by the next reload.
    broken = [site("a", memory="96MiB", image=images["broken"]), site("c", idle_timeout="9m")]
    d.config_path.write_text(d.render(broken, **settings))
    for _ in range(2):
        failed = await asyncio.to_thread(d.command, "reload")
        assert failed.returncode == 1 and "a: not applied" in failed.stderr, failed.stdout + failed.stderr
        assert await status_of(d, "a.localhost") == 200 and d.container("a").id == a_now.id

    sites = [site("a", memory="96MiB"), site("c", idle_timeout="9m"), site("e")]
    d.config_path.write_text(d.render(sites, **settings))
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)

    async def e_answers() -> bool:
        return await status_of(d, "e.localhost") == 200

    await until(e_answers, 20, "site e, added by SIGHUP, to answer")


async def test_reload_deploys_a_static_sites_new_source(deploy: Any) -> None:
    site = {"name": "docs", "hosts": ["docs.localhost"], "source": "sources/one"}
    d: Deployment = await deploy([site], start=False, builds={"source_roots": ["sources"]})
    for name, text in (("one", "first folder"), ("two", "second folder")):
        (d.dir / "sources" / name).mkdir(parents=True)
        (d.dir / "sources" / name / "index.html").write_text(text)
    await d.start()

    async def serves(text: str) -> bool:
        async with aiohttp.ClientSession() as s, s.get(d.url, headers={"Host": "docs.localhost"}) as r:
            return r.status == 200 and (await r.text()) == text

    await until(lambda: serves("first folder"), 30, "the first folder to be published")
    d.config_path.write_text(d.render([{**site, "source": "sources/two"}], **d.server))
    done = await asyncio.to_thread(d.command, "reload")
    assert done.returncode == 0 and "docs (files; deploying its new source)" in done.stdout, done.stdout
    await until(lambda: serves("second folder"), 30, "the new folder to be published")
