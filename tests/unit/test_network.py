"""Sites isolated from each other: the deployment's bridge network (made or adopted at startup, before anything
else), holders and plain sites made on it, and containers made on Docker's default bridge by an earlier dialup."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from activator.errors import NetworkUnfit, RuntimeUnavailable
from activator.model import Network, SiteState
from activator.runtime.docker import DockerRuntime
from activator.runtime.inspection import _container
from activator.runtime.network import ICC, ensure
from activator.testing.rig import site_config
from tests.unit.supervisor_kit import before_up, container, found_at_startup, holder, starts_since

LABELS = {"dialup.deployment": "t"}


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response=response, explanation=explanation)


class Networks:
    """The SDK's low-level network calls, on a dict of networks by name."""

    def __init__(self, **networks: dict[str, Any]) -> None:
        self.networks = dict(networks)
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.refuse: docker.errors.APIError | None = None
        self.made_meanwhile: dict[str, Any] | None = None  # made by another process between our inspect and create

    def inspect_network(self, name: str) -> dict[str, Any]:
        if name not in self.networks:
            raise docker.errors.NotFound(f"network {name} not found")
        return self.networks[name]

    def create_network(self, name: str, **kwargs: Any) -> dict[str, str]:
        if self.made_meanwhile is not None:
            self.networks[name] = self.made_meanwhile
            raise _api_error(409, f"network with name {name} already exists")
        if self.refuse is not None:
            raise self.refuse
        self.created.append((name, kwargs))
        self.networks[name] = {"Name": name, "Driver": kwargs["driver"], "Options": kwargs["options"], **kwargs}
        self.networks[name]["Labels"] = kwargs["labels"]
        return {"Id": "n1"}


FIT = {"Driver": "bridge", "Options": {ICC: "false"}, "Labels": LABELS}


def test_a_missing_network_is_made_an_isolating_bridge_labelled_with_the_deployment() -> None:
    api = Networks()
    ensure(api, "dialup-t", "t")
    ((name, kwargs),) = api.created
    assert name == "dialup-t" and kwargs["driver"] == "bridge" and kwargs["options"] == {ICC: "false"}
    assert kwargs["labels"] == LABELS and kwargs["check_duplicate"] is True


def test_the_network_found_is_adopted_and_nothing_made() -> None:
    api = Networks(**{"dialup-t": FIT})
    ensure(api, "dialup-t", "t")
    assert api.created == []


def test_a_network_made_meanwhile_by_another_process_is_adopted() -> None:
    api = Networks()
    api.made_meanwhile = FIT
    ensure(api, "dialup-t", "t")


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        ({**FIT, "Labels": {}}, "not labelled dialup.deployment=t"),
        ({**FIT, "Labels": {"dialup.deployment": "other"}}, "not labelled dialup.deployment=t"),
        ({**FIT, "Options": {}}, f"can reach each other (it lacks the option {ICC}=false)"),
        ({**FIT, "Options": {ICC: "true"}}, "can reach each other"),
        ({**FIT, "Driver": "macvlan"}, "its driver is 'macvlan'"),
    ],
)
def test_a_network_of_that_name_that_cannot_isolate_is_refused_naming_it(found: dict[str, Any], problem: str) -> None:
    api = Networks(**{"dialup-t": found})
    with pytest.raises(NetworkUnfit) as refused:
        ensure(api, "dialup-t", "t")
    assert refused.value.name == "dialup-t" and problem in refused.value.problem
    assert "docker network rm dialup-t" in str(refused.value) and api.created == []
    assert isinstance(refused.value, RuntimeUnavailable)  # `dialup up` exits 1 with it


def test_an_engine_that_cannot_make_it_stops_startup() -> None:
    api = Networks()
    api.refuse = _api_error(500, "could not find an available, non-overlapping IPv4 address pool")
    with pytest.raises(RuntimeUnavailable, match="could not create the network dialup-t: could not find an available"):
        ensure(api, "dialup-t", "t")


def _attrs(mode: str) -> dict[str, Any]:
    return {"Id": "c1", "State": {"Status": "exited"}, "HostConfig": {"NetworkMode": mode}, "Config": {}}


@pytest.mark.parametrize(
    ("mode", "isolated"), [("dialup-t", True), ("container:abc", True), ("default", False), ("bridge", False)]
)
def test_a_container_on_the_default_bridge_is_not_isolated(mode: str, isolated: bool) -> None:
    assert _container(_attrs(mode), 8080, "dialup-t").isolated is isolated


class Recording:
    """The SDK's create calls, recorded."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.host_config: dict[str, Any] = {}

    def create(self, image: str, **kwargs: Any) -> Any:  # containers.create
        self.kwargs = kwargs
        return SimpleNamespace(id="c1")

    def create_host_config(self, **kwargs: Any) -> dict[str, Any]:  # api.create_host_config
        self.host_config = kwargs
        return kwargs

    def create_container(self, image: str, **kwargs: Any) -> dict[str, str]:  # api.create_container
        return {"Id": "h1"}


async def test_plain_sites_and_holders_are_made_on_the_deployments_network() -> None:
    runtime = DockerRuntime("t")
    sdk = Recording()
    runtime._client = SimpleNamespace(containers=sdk, api=sdk, close=lambda: None)  # type: ignore[assignment]
    try:
        await runtime.create(site_config("a", network=Network.PLAIN))
        assert sdk.kwargs["network"] == "dialup-t" and sdk.kwargs["ports"] == {"8080/tcp": ("127.0.0.1", None)}
        await runtime.create_holder(site_config("a"), "dialup-holder:1")
        assert sdk.host_config["network_mode"] == "dialup-t"
        assert sdk.host_config["port_bindings"] == {8080: ("127.0.0.1", None)}
        await runtime.create(site_config("a"), holder_id="h1")  # in its holder's namespace: no network of its own
        assert sdk.kwargs["network_mode"] == "container:h1" and "network" not in sdk.kwargs
    finally:
        await runtime.close()


# -- at startup, on the fakes ---------------------------------------------------------------------------------


async def test_the_network_is_ensured_before_anything_is_created() -> None:
    async with before_up(site_config("a"), site_config("b", network=Network.PLAIN)) as r:
        await r.up()
        ops = [op for op, _ in r.runtime.calls]
        assert ops.count("ensure_network") == 1
        assert ops.index("ensure_network") < min(ops.index("create_holder"), ops.index("create"))


async def test_a_stopped_plain_container_on_the_default_bridge_is_made_anew() -> None:
    cfg = site_config("a", network=Network.PLAIN)
    async with before_up(cfg) as r:
        old = (await r.runtime.create(cfg)).id
        r.runtime.containers[old].isolated = False  # made by a dialup from before isolation

        await r.up()

        assert old not in r.runtime.containers and container(r, "a").isolated
        assert r["a"].container_id == container(r, "a").id and "replaced" in r.events.kinds("a")
        assert isinstance(await r.answer("a"), int)


async def test_a_running_plain_container_on_the_default_bridge_is_kept_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = site_config("a", network=Network.PLAIN)
    async with before_up(cfg) as r:
        old = (await r.runtime.create(cfg)).id
        await r.runtime.start(cfg, old)
        r.runtime.containers[old].isolated = False
        mark = len(r.runtime.calls)

        with caplog.at_level(logging.WARNING):
            await r.up()

        assert r["a"].state is SiteState.RUNNING and r["a"].container_id == old and starts_since(r, "a", mark) == 0
        assert "replaced" not in r.events.kinds("a")
        assert any("default bridge" in m and "dialup down" in m for m in caplog.messages)


async def test_a_stopped_holder_on_the_default_bridge_is_made_anew_and_its_site_joins_the_new_one() -> None:
    async with before_up(site_config("a")) as r:
        stale, _ = await found_at_startup(r, r["a"].config, "created")
        old_holder = holder(r, "a")
        await r.runtime.stop(old_holder.id, 1)  # as `dialup down` leaves it
        old_holder.isolated = False

        await r.up()

        new_holder = holder(r, "a")
        assert new_holder.id != old_holder.id and new_holder.isolated and new_holder.status == "running"
        assert old_holder.id not in r.runtime.containers and stale not in r.runtime.containers
        assert container(r, "a").network_mode == f"container:{new_holder.id}"
        assert "holder_created" in r.events.kinds("a") and "replaced" in r.events.kinds("a")
        assert await r.answer("a") == new_holder.host_port


async def test_a_running_holder_on_the_default_bridge_is_kept_with_its_running_site() -> None:
    async with before_up(site_config("a")) as r:
        found, port = await found_at_startup(r, r["a"].config, "running")
        holder(r, "a").isolated = False
        mark = len(r.runtime.calls)

        await r.up()

        assert r["a"].state is SiteState.RUNNING and r["a"].container_id == found and r["a"].host_port == port
        assert starts_since(r, "a", mark) == 0 and ("create_holder", "a") not in r.runtime.calls[mark:]
