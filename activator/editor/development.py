"""The editor's side of development containers (devserver.py): a site's starts when the editor opens the site
(a cold start through the supervisor, like a preview request's), and an edit counts as its activity, so one
with no edit and no preview request for `[editor] idle_timeout` is stopped by the reaper like any idle site."""

from __future__ import annotations

import asyncio
import logging

from activator.errors import SiteUnavailable
from activator.supervisor import Supervisor

log = logging.getLogger("activator.editor")


class Development:
    """Writer of nothing of its own but its start tasks: the starts and the activity are the supervisor's."""

    def __init__(self, supervisor: Supervisor, dev_of: dict[str, str]) -> None:
        self._supervisor = supervisor
        self._dev_of = dev_of  # site -> its development site's name
        self._starts: set[asyncio.Task[None]] = set()

    def opened(self, site: str) -> None:
        """The editor opened the site: its development container starts, if it has one (in the background)."""
        if site in self._dev_of:
            task = asyncio.ensure_future(self._start(self._dev_of[site]))
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    def edited(self, site: str) -> None:
        if site in self._dev_of:
            self._supervisor.on_requests(self._dev_of[site], 1)

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
