"""DockerRuntime against a stub of the docker SDK: which threads its calls run on, and how it reads answers."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

from activator.config import SiteConfig
from activator.runtime.docker import STOP_WORKERS, DockerRuntime

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
