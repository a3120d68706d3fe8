"""What a client is told when its site cannot be served: a short public phrase, never the app's log lines; the
whole reason stays with the operator (the event log, `status`' last_failure)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import docker.errors
from aiohttp.test_utils import TestClient, TestServer

from activator.edge import SUPERVISOR, make_edge_app, unavailable
from activator.errors import AppExited, SiteFailing, SiteUnavailable
from activator.model import SiteState
from activator.runtime.docker import _refused
from activator.testing.rig import site_config
from activator.testing.runtime import App
from tests.unit.conftest import MakeRig

SECRET = "fatal: cannot read /srv/app/.env (DATABASE_PASSWORD=hunter2)"


class Refusing:
    """A supervisor whose every lease is refused with `error`: the edge's side of the contract only."""

    def __init__(self, error: SiteUnavailable) -> None:
        self.error = error

    def site_for_host(self, host: str) -> Any:
        return SimpleNamespace(name=self.error.site)

    def admit(self, site: Any) -> None:
        pass  # under any rate limit

    @asynccontextmanager
    async def lease(self, site: Any) -> AsyncIterator[None]:
        raise self.error
        yield  # an async generator, as the real lease is


async def edge_answer(error: SiteUnavailable) -> tuple[int, str, str]:
    app = make_edge_app()
    app[SUPERVISOR] = Refusing(error)  # type: ignore[assignment]
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/", headers={"Host": "a.test"})
        return response.status, await response.text(), response.headers.get("Retry-After", "")


async def test_the_edge_answers_an_app_that_exited_without_its_log_line() -> None:
    error = AppExited("a", "its container exited with code 3", oom=False, last_line=SECRET)
    assert error.reason == f"its container exited with code 3: {SECRET}"

    status, body, retry = await edge_answer(error)

    assert (status, retry) == (503, "5")
    assert body == "site 'a' is unavailable: its container exited with code 3\n"


async def test_a_failed_start_keeps_the_log_line_for_the_operator_only(rig: MakeRig) -> None:
    r = await rig(site_config("a"))
    r.runtime.apps["a"] = App(exit_after=0, exit_code=3, last_line=SECRET)

    answer = await r.answer("a")

    assert isinstance(answer, AppExited)
    body = unavailable(answer).text or ""
    assert "exited with code 3" in body and SECRET not in body and body.count("\n") == 1
    assert SECRET in answer.reason
    assert SECRET in r["a"].failure  # what `status` shows as last_failure
    assert any(SECRET in row.detail for row in r.events.rows if row.kind == "start_failed")


async def test_a_failing_site_is_answered_without_its_last_failure(rig: MakeRig) -> None:
    r = await rig(site_config("a", restart_backoff=1.0))
    r.runtime.apps["a"] = App(exit_after=0, exit_code=3, last_line=SECRET)
    for _ in range(5):
        assert isinstance(await r.answer("a"), AppExited)
        await r.until("a", SiteState.STOPPED)

    answer = await r.answer("a")

    assert isinstance(answer, SiteFailing)
    assert SECRET in answer.reason
    body = unavailable(answer).text or ""
    assert "failing, crashed 5 times in 5 minutes; next try in" in body and SECRET not in body


async def test_an_engine_message_stays_with_the_operator() -> None:
    error = _refused("a", "start it", docker.errors.APIError("500", explanation="OCI runtime create failed: /var/x"))
    assert error.reason == "docker could not start it: OCI runtime create failed: /var/x"
    assert (await edge_answer(error))[1] == "site 'a' is unavailable: docker could not start it\n"
