"""The editor's side of development containers (devserver.py): a site's starts when the editor opens the site
(a cold start through the supervisor, like a preview request's), and an edit counts as its activity, so one
with no edit and no preview request for `[editor] idle_timeout` is stopped by the reaper like any idle site."""

from __future__ import annotations

import asyncio
import logging

from activator.editor.devserver import SUFFIX
from activator.errors import SiteUnavailable
from activator.supervisor import Supervisor

log = logging.getLogger("activator.editor")


class Development:
    """Writer of nothing of its own but its start tasks: the starts and the activity are the supervisor's."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._starts: set[asyncio.Task[None]] = set()

    def opened(self, site: str) -> None:
        """The editor opened the site: its development container starts, if it has one (in the background)."""
        if (name := self._dev_of(site)) is not None:
            task = asyncio.ensure_future(self._start(name))
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    def edited(self, site: str) -> None:
        if (name := self._dev_of(site)) is not None:
            self._supervisor.on_requests(name, 1)

    def _dev_of(self, site: str) -> str | None:
        """The site's development site, as the supervisor runs it now (a reload adds and removes them)."""
        dev = self._supervisor.sites.get(site + SUFFIX)
        return dev.name if dev is not None and dev.config.develops == site else None

    async def _start(self, name: str) -> None:
        dev = self._supervisor.sites.get(name)
        if dev is None:  # removed by a reload since
            return
        try:
            async with self._supervisor.lease(dev):
                pass
        except SiteUnavailable as exc:  # the preview's own request gets the 503 and its reason
            log.warning("development site %s did not start: %s", name, exc)

    async def close(self) -> None:
        for task in self._starts:
            task.cancel()
        await asyncio.gather(*self._starts, return_exceptions=True)
