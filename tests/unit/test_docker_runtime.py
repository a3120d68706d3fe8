"""DockerRuntime against a stub of the docker SDK: which threads its calls run on, and how it reads answers."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest
import requests

from activator.config import SiteConfig
from activator.errors import ContainerExists, StartFailed
from activator.model import ContainerEvent
from activator.runtime import events as runtime_events
from activator.runtime.docker import STOP_WORKERS, DockerRuntime
from activator.runtime.events import _event

SITE = SiteConfig(name="blog", hosts=("blog.test",), image="blog:1", port=8080)
LIMIT = 5.0  # seconds: generous; a call that is not stuck answers in milliseconds


class BlockingStops:
    """The SDK's low-level API: stops block until released, everything else answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.stopping = 0  # stops inside the engine right now
        self.most = 0  # the most stops ever inside at once

    def stop(self, container_id: str, timeout: int) -> None:
        with self.lock:
            self.stopping += 1
            self.most = max(self.most, self.stopping)
        try:
            assert self.release.wait(LIMIT * 4), "stop never released"
        finally:
            with self.lock:
                self.stopping -= 1

    def start(self, container_id: str) -> None:
        pass

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        return {
            "Id": container_id,
            "State": {"Status": "running"},
            "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}},
            "HostConfig": {"PortBindings": {"8080/tcp": [{}]}},
            "Config": {"Labels": {}},
        }


async def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + LIMIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def test_a_start_never_queues_behind_stops() -> None:
    workers = 8
    runtime = DockerRuntime("t", workers=workers)
    api = BlockingStops()
    runtime._client = SimpleNamespace(api=api, close=lambda: None)  # type: ignore[assignment]
    # More stops than every worker of the shared pool and the stop pool together.
    stops = [asyncio.ensure_future(runtime.stop(f"c{i}", 10)) for i in range(workers + STOP_WORKERS)]
    try:
        await _until(lambda: api.stopping >= STOP_WORKERS, "the stops to reach the engine")
        started = await asyncio.wait_for(runtime.start(SITE, "s1"), LIMIT)
        assert (started.id, started.status, started.host_port) == ("s1", "running", 32768)
        assert api.stopping == STOP_WORKERS, "stops beyond the stop pool's workers wait their turn"
    finally:
        api.release.set()
        await asyncio.wait_for(asyncio.gather(*stops), LIMIT)
        await runtime.close()
    assert api.most == STOP_WORKERS


def test_an_event_carries_the_engines_nanosecond_time() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {
            "ID": "abc123",
            "Attributes": {"dialup.site": "blog", "dialup.role": "site", "exitCode": "137", "image": "blog:1"},
        },
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }
    assert _event(raw) == ContainerEvent(
        container_id="abc123", site="blog", action="die", exit_code=137, role="site", time_ns=1700000000123456789
    )
    del raw["timeNano"]
    assert _event(raw).time_ns == 0


def _raw(container: str, action: str, time_ns: int) -> dict[str, Any]:
    return {
        "Action": action,
        "Actor": {"ID": container, "Attributes": {"dialup.site": "blog"}},
        "time": time_ns // 1_000_000_000,
        "timeNano": time_ns,
    }


class EventStreams:
    """The SDK's `events`: each call streams the next batch; a batch that breaks ends in an error, the last one
    waits until it is closed."""

    def __init__(self, *batches: tuple[list[dict[str, Any]], bool]) -> None:
        self.batches = list(batches)
        self.since: list[int | None] = []
        self.closed = threading.Event()
        self.holding = threading.Event()  # the last batch is all out

    def events(self, decode: bool, filters: dict[str, str], since: int | None) -> Any:
        self.since.append(since)
        items, breaks = self.batches.pop(0) if self.batches else ([], False)
        streams = self

        class Stream:
            def __iter__(self) -> Any:
                yield from items
                if breaks:
                    raise ConnectionError("stream broke")
                streams.holding.set()
                streams.closed.wait(LIMIT * 4)

            def close(self) -> None:
                streams.closed.set()

        return Stream()


async def test_a_reconnect_does_not_deliver_the_replayed_events_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime_events, "RECONNECT_PAUSE", 0.0)
    t0 = 1_700_000_000 * 1_000_000_000
    first = [_raw("c1", "start", t0 + 1), _raw("c1", "die", t0 + 500)]
    # Docker answers a reconnect from second t0 with every event of that second, then the new ones.
    second = [*first, _raw("c1", "start", t0 + 900), _raw("c2", "start", t0 + 1_000_000_001)]
    streams = EventStreams((first, True), (second, False))
    runtime = DockerRuntime("t")
    runtime._client = SimpleNamespace(api=streams, close=lambda: None)  # type: ignore[assignment]
    delivered: list[tuple[str, str, int]] = []
    try:
        runtime.watch(lambda e: delivered.append((e.container_id, e.action, e.time_ns)))
        await _until(streams.holding.is_set, "the reconnect's events to be read")
        await _until(lambda: len(delivered) >= 4, "the events")
    finally:
        await runtime.close()
    assert delivered == [
        ("c1", "start", t0 + 1),
        ("c1", "die", t0 + 500),
        ("c1", "start", t0 + 900),
        ("c2", "start", t0 + 1_000_000_001),
    ]
    assert streams.since == [None, 1_700_000_000]


def _api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Client Error", response=response, explanation=explanation)


class RefusingCreates:
    """The SDK's `containers` collection: every create fails with the given error."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def create(self, image: str, **kwargs: Any) -> Any:
        raise self.error


async def _create_refused(error: Exception) -> BaseException:
    runtime = DockerRuntime("t")
    runtime._client = SimpleNamespace(containers=RefusingCreates(error), close=lambda: None)  # type: ignore[assignment]
    try:
        with pytest.raises(StartFailed) as caught:
            await runtime.create(SITE)
    finally:
        await runtime.close()
    return caught.value


async def test_a_create_refused_because_the_name_is_taken_is_container_exists() -> None:
    # What Docker 20.10 answers, word for word.
    error = await _create_refused(
        _api_error(
            409,
            'Conflict. The container name "/dialup-t-blog" is already in use by container "f58084f2e2d5". You have'
            " to remove (or rename) that container to be able to reuse that name.",
        )
    )
    assert isinstance(error, ContainerExists)
    assert (error.site, error.name) == ("blog", "dialup-t-blog")
    assert "dialup-t-blog" in error.reason and "already exists" in error.reason


async def test_other_refused_creates_stay_a_plain_start_failure() -> None:
    error = await _create_refused(_api_error(500, "no space left on device"))
    assert type(error) is StartFailed
    assert error.reason == "docker could not create it: no space left on device"
