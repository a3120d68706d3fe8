"""Unit-test fixtures: a supervisor wired on fakes (activator/testing), closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from activator.config import SiteConfig
from activator.testing.rig import Rig

MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def rig() -> AsyncIterator[MakeRig]:
    """rig(site_config(...), ..., budget=bytes) -> a Rig that is up (adopted, routes loaded)."""
    made: list[Rig] = []

    async def make(*sites: SiteConfig, **options: Any) -> Rig:
        built = Rig(tuple(sites), **options)
        made.append(built)
        return await built.up()

    yield make
    for built in made:
        await built.close()
