"""Scalable sites and rate limits with the real Docker Engine and the real Caddy: a second instance under load and
gone after it, with no failed request; a scale-up the budget refuses; the second instance kept across a restart
of the activator; 429s with Retry-After above a site's rate limit and none below."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from tests.integration.harness import docker_status, site, started_at, until

# Small figures, so that a test takes seconds: a stable window of 10 s (the panic window is 6 s, its least), and
# one instance carrying 30 requests a minute.
SCALABLE = {"strategy": "scalable", "scale_threshold": 30, "scale_down_delay": "2s", "scale_window": "10s"}


class Load:
    """Requests to a site at about `rate` a second from `workers` clients, each answer kept (status, body)."""

    def __init__(self, d: Any, host: str, path: str = "/instance") -> None:
        self.d, self.host, self.path = d, host, path
        self.answers: list[tuple[int, str, str]] = []  # (status, body, Retry-After)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, session: aiohttp.ClientSession, rate: float, workers: int = 4) -> None:
        self._stop.clear()
        self._tasks = [asyncio.ensure_future(self._worker(session, workers / rate)) for _ in range(workers)]

    async def _worker(self, session: aiohttp.ClientSession, every: float) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            async with session.get(self.d.url + self.path, headers={"Host": self.host}) as r:
                self.answers.append((r.status, await r.text(), r.headers.get("Retry-After", "")))
            await asyncio.sleep(max(0.0, every - (time.monotonic() - began)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def statuses(self) -> Counter[int]:
        return Counter(status for status, _, _ in self.answers)

    def instances(self) -> set[str]:
        return {body.strip() for status, body, _ in self.answers if status == 200}


async def row(d: Any, name: str) -> dict[str, Any]:
    return (await d.status())[name]


async def instances(d: Any, n: int, limit: float, what: str) -> None:
    """Wait until api's status shows `n` instances serving."""

    async def reached() -> bool:
        return bool((await row(d, "api"))["instances"] == n)

    await until(reached, limit, what)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


async def test_a_scalable_site_gets_a_second_instance_under_load_and_loses_it_after_with_no_failed_request(
    deploy, images
):
    d = await deploy([site("api", images["pyapp"], kind="static", **SCALABLE)])
    await until(lambda: docker_status(d.container("api")) == "running", 20, "the scalable site started with dialup")
    await d.wait_routed("api")
    async with aiohttp.ClientSession() as s:
        load = Load(d, "api.test")
        load.start(s, rate=20)

        await instances(d, 2, 30, "a second instance")
        assert docker_status(d.container("api.2")) == "running"
        await until(lambda: len(load.instances()) == 2, 15, "answers from both instances, through Caddy")
        await load.stop()
        up = await row(d, "api")
        assert up["scale_rate"] > SCALABLE["scale_threshold"]
        # Both instances are in the site's route, and Caddy (least_conn) gave each a share.
        spread = Counter(body.strip() for status, body, _ in load.answers[-40:] if status == 200)
        assert len(spread) == 2, spread

        # Below the threshold: slow requests, one at a time, some of them in flight on the second instance
        # when it is drained; it goes only once they are answered.
        trickle = Load(d, "api.test", "/slow?s=1.5")
        trickle.start(s, rate=1 / 3, workers=1)

        await instances(d, 1, 60, "back to one instance")
        await until(lambda: docker_status(d.container("api.2")) == "exited", 15, "the second instance stopped")
        await trickle.stop()
    assert load.statuses() == Counter({200: len(load.answers)}), load.statuses()
    assert trickle.statuses() == Counter({200: len(trickle.answers)}), trickle.statuses()
    events = kinds(await d.events("api"))
    assert events.count("scaled_up") == 1 and events.count("scaled_down") == 1, events
    assert "evicted" not in kinds(await d.events("api.2"))


async def test_a_scale_up_the_budget_refuses_leaves_the_site_serving_on_one(deploy, images):
    # Room for the site and not for a second instance of it (the other site is persistent: never evicted).
    sites = [
        site("api", images["pyapp"], kind="static", **SCALABLE),
        site("keep", images["static"], strategy="persistent"),
    ]
    d = await deploy(sites, budget={"memory": "160MiB"})
    await until(lambda: docker_status(d.container("keep")) == "running", 20, "the persistent site")
    await until(lambda: docker_status(d.container("api")) == "running", 20, "the scalable site")
    await d.wait_routed("api")
    async with aiohttp.ClientSession() as s:
        load = Load(d, "api.test")
        load.start(s, rate=20)

        async def refused() -> bool:
            return "scale_refused" in kinds(await d.events("api"))

        await until(refused, 30, "the scale-up refused")
        await asyncio.sleep(0)  # (the load goes on while the status is read)
        assert (await row(d, "api"))["instances"] == 1
        await load.stop()
    assert load.statuses() == Counter({200: len(load.answers)}), load.statuses()
    assert len(load.instances()) == 1
    detail = next(e["detail"] for e in await d.events("api") if e["kind"] == "scale_refused")
    assert "memory budget full" in detail, detail
    assert docker_status(d.container("keep")) == "running"


async def test_a_restart_of_the_activator_keeps_both_instances(deploy, images):
    d = await deploy([site("api", images["pyapp"], kind="static", **{**SCALABLE, "scale_down_delay": "10m"})])
    await until(lambda: docker_status(d.container("api")) == "running", 20, "the scalable site")
    await d.wait_routed("api")
    async with aiohttp.ClientSession() as s:
        load = Load(d, "api.test")
        load.start(s, rate=20)

        await instances(d, 2, 30, "a second instance")
        await until(lambda: len(load.instances()) == 2, 15, "answers from both instances")
        await load.stop()
        began = {name: started_at(d.container(name)) for name in ("api", "api.2")}
        d.kill()
        await d.start()
        assert (await row(d, "api"))["instances"] == 2
        assert {name: started_at(d.container(name)) for name in began} == began  # adopted, not restarted
        after = Load(d, "api.test")
        after.start(s, rate=20)
        await until(lambda: len(after.instances()) == 2, 15, "both instances answering after the restart")
        await after.stop()
    assert after.statuses() == Counter({200: len(after.answers)})
    assert after.instances() == load.instances()  # the same two containers


async def test_a_rate_limited_site_gets_429s_above_its_rate_and_none_below(deploy, images):
    limit = {"rate": "5/s", "burst": 5}
    d = await deploy([site("lim", images["pyapp"], kind="static", rate_limit=limit)])
    async with aiohttp.ClientSession() as s:
        below = Load(d, "lim.test", "/")
        below.start(s, rate=2, workers=1)
        await asyncio.sleep(0)
        await until(lambda: len(below.answers) >= 10, 30, "ten requests below the limit")
        await below.stop()
        assert below.statuses() == Counter({200: len(below.answers)})
        assert not d.route_on_activator("lim")  # under its limit Caddy serves it directly
        assert (await row(d, "lim"))["rate_limited"] is False

        above = Load(d, "lim.test", "/")
        began = time.monotonic()
        above.start(s, rate=40, workers=8)

        async def limited() -> bool:
            return "rate_limited" in kinds(await d.events("lim"))

        await until(limited, 20, "the route moved to the activator's limiter")
        await until(lambda: above.statuses()[429] >= 20, 20, "429s")
        await above.stop()
        seconds = time.monotonic() - began
        refused = [(body, retry) for status, body, retry in above.answers if status == 429]
        assert all(retry.isdigit() and int(retry) >= 1 for _, retry in refused), refused[:3]
        assert "over its rate limit of 5/s" in refused[0][0]
        assert set(above.statuses()) == {200, 429}, above.statuses()
        # What got through: the limit's share of the time, its burst, and what Caddy served directly before the
        # rate was seen (at most the engage window's worth, plus a reaper tick).
        assert above.statuses()[200] <= 5 * seconds + 5 + 40 * 3.5, (above.statuses(), seconds)
        assert (await row(d, "lim"))["refused"] == above.statuses()[429]
        assert await d.metric("dialup_rate_limited_requests_total", site="lim") == above.statuses()[429]

        async def lifted() -> bool:
            return "rate_limit_lifted" in kinds(await d.events("lim"))

        await until(lifted, 30, "the route back on the container")
        await until(lambda: not d.route_on_activator("lim"), 10, "Caddy's route file on the container")
        again = Load(d, "lim.test", "/")
        again.start(s, rate=2, workers=1)
        await until(lambda: len(again.answers) >= 4, 30, "requests below the limit again")
        await again.stop()
    assert again.statuses() == Counter({200: len(again.answers)})


async def test_a_reload_makes_a_site_scalable_and_lazy_again(deploy, images):
    lazy = site("api", images["pyapp"], kind="static")
    d = await deploy([lazy])
    d.config_path.write_text(d.render([{**lazy, **SCALABLE}], **d.server))
    done = await asyncio.to_thread(d.command, "reload")
    assert done.returncode == 0, done.stderr
    await until(lambda: docker_status(d.container("api")) == "running", 20, "started as the reload made it scalable")
    async with aiohttp.ClientSession() as s:
        load = Load(d, "api.test")
        load.start(s, rate=20)
        await until(lambda: len(load.instances()) == 2, 30, "answers from two instances")
        d.config_path.write_text(d.render([lazy], **d.server))
        done = await asyncio.to_thread(d.command, "reload")
        assert done.returncode == 0, done.stderr
        await until(lambda: "dialup-" + d.name + "-api.2" not in d.container_names(), 30, "the second one removed")
        mark = len(load.answers)
        await until(lambda: len(load.answers) > mark + 20, 20, "answers after it")
        await load.stop()
    assert load.statuses() == Counter({200: len(load.answers)}), load.statuses()
    assert (await row(d, "api"))["instances"] is None
