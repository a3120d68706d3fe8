"""Adoption at startup: the containers an earlier activator left are taken over, restarting none; those of
sites gone from the config are removed; one cut off from its holder is made anew."""

from __future__ import annotations

from activator.model import SiteState
from activator.testing.rig import site_config
from tests.unit.supervisor_kit import before_up, container, found_at_startup, holder, starts_since


async def test_a_running_container_is_adopted_unstarted_and_routed_from_the_first_load() -> None:
    async with before_up(site_config("a")) as r:
        found, port = await found_at_startup(r, r["a"].config, "running")
        mark = len(r.runtime.calls)

        await r.up()

        assert r["a"].state is SiteState.RUNNING and r["a"].container_id == found and r["a"].host_port == port
        calls = r.runtime.calls[mark:]
        assert starts_since(r, "a", mark) == 0 and ("create", "a") not in calls and ("stop", "a") not in calls
        assert r.router.loads == 1 and r.routed_to("a") == port and r.router.changes == []
        assert await r.answer("a") == port and container(r, "a").runs == 1


async def test_a_paused_container_is_adopted_paused_and_routed_to_the_activator() -> None:
    async with before_up(site_config("a")) as r:
        found, port = await found_at_startup(r, r["a"].config, "paused")

        await r.up()

        assert r["a"].state is SiteState.PAUSED and r["a"].container_id == found
        assert r.routed_to("a") is None and container(r, "a").status == "paused"
        assert await r.answer("a") == port and "wake" in r.events.kinds("a")  # woken, not started
        assert container(r, "a").runs == 1


async def test_the_containers_of_a_site_gone_from_the_config_are_removed() -> None:
    async with before_up(site_config("a")) as r:
        await found_at_startup(r, site_config("gone"), "running")

        await r.up()

        assert r.runtime.of("gone") is None and r.runtime.of("gone", role="holder") is None
        assert r.events.kinds("gone") == ["removed", "removed"]
        assert "gone" not in r.router.caddy


async def test_a_container_that_joined_a_holder_since_gone_is_replaced() -> None:
    async with before_up(site_config("a")) as r:
        stale, _ = await found_at_startup(r, r["a"].config, "created")
        old_holder = holder(r, "a").id
        await r.runtime.remove(old_holder)  # the holder went, and the container still names it

        await r.up()

        new_holder = holder(r, "a").id
        assert new_holder != old_holder and stale not in r.runtime.containers
        assert container(r, "a").network_mode == f"container:{new_holder}"
        assert r["a"].container_id == container(r, "a").id and r["a"].joined == new_holder
        assert "replaced" in r.events.kinds("a") and r["a"].state is SiteState.STOPPED
        assert await r.answer("a") == holder(r, "a").host_port
