"""Domain errors: small classes with data. The edge turns them into HTTP answers; nothing else does."""

from __future__ import annotations

import os
import pwd
from pathlib import Path


class RuntimeUnavailable(Exception):
    """The container engine cannot be reached at all."""


class NetworkUnfit(RuntimeUnavailable):
    """A network of the deployment network's name exists and cannot serve as it."""

    def __init__(self, name: str, problem: str) -> None:
        self.name, self.problem = name, problem
        super().__init__(
            f"the network {name} cannot isolate the sites: {problem}; remove it (docker network rm {name}) or"
            " give the deployment another [server] name"
        )


class AlreadyRunning(Exception):
    """Another process (another `dialup up`) holds the state directory's lock."""

    def __init__(self, path: Path, pid: int | None, advice: str = "") -> None:
        self.path, self.pid = path, pid
        who = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        super().__init__(f"another dialup is running on this state directory: {who} holds the lock {path}{advice}")


class StateDirRefused(Exception):
    """The state directory (or its system/) cannot be trusted: another user owns it, or can write in it."""

    def __init__(self, path: Path, owner: int | None, problem: str) -> None:
        self.path, self.owner, self.problem = path, owner, problem
        whose = f"; its owner is {_user(owner)}, and dialup runs as {_user(os.geteuid())}" if owner is not None else ""
        super().__init__(f"refusing the state directory {path}: {problem}{whose}")


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


class SiteUnavailable(Exception):
    """A request for a configured site cannot be served now. `reason` is the whole story in one line, for the
    operator (the event log, `status`, the activator's log); `public` is the short phrase a client is told, without
    what only the operator should read (the app's log lines, the engine's messages, Python errors)."""

    retry_after = 5

    def __init__(self, site: str, reason: str, public: str | None = None) -> None:
        self.site, self.reason = site, reason
        self.public = reason if public is None else public
        super().__init__(f"{site}: {reason}")


class StartFailed(SiteUnavailable):
    """The container could not be started, or exited before it answered."""


class AppExited(StartFailed):
    """The app's container exited (or was killed for its memory) before it answered: the app's doing, so a
    crash. Other StartFailed errors are the engine's or ours, and are not counted as crashes. The container's
    last log line goes into `reason`, never into `public`: an app may print anything (paths, secrets)."""

    def __init__(self, site: str, reason: str, oom: bool, last_line: str = "") -> None:
        self.oom, self.last_line = oom, last_line
        super().__init__(site, f"{reason}: {last_line}" if last_line else reason, public=reason)


class ImageMissing(StartFailed):
    def __init__(self, site: str, image: str) -> None:
        self.image = image
        super().__init__(site, f"image {image!r} is not on this host; build or pull it first")


class ContainerExists(StartFailed):
    """The engine refused to create the site's container: its name is taken (made by another process meanwhile, or
    left over from an earlier one)."""

    def __init__(self, site: str, name: str) -> None:
        self.name = name
        super().__init__(
            site, f"docker could not create it: a container named {name!r} already exists", "docker could not create it"
        )


class StartTimeout(SiteUnavailable):
    def __init__(self, site: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(site, f"did not answer within its start_timeout of {timeout:g}s")


class QueueFull(SiteUnavailable):
    retry_after = 1

    def __init__(self, site: str, limit: int) -> None:
        self.limit = limit
        super().__init__(site, f"{limit} requests are already waiting for this site to start")


class ContainerGone(Exception):
    """The container the activator knew of was removed behind its back."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        super().__init__(f"container {container_id[:12]} no longer exists")


class SiteFailing(SiteUnavailable):
    """Crashed too often lately: answered at once until the backoff allows the next try."""

    def __init__(self, site: str, reason: str, retry_after: int, public: str | None = None) -> None:
        super().__init__(site, reason, public)
        self.retry_after = max(1, retry_after)


class RateLimited(Exception):
    """A request over its site's rate limit: answered 429, with the seconds until one would be let through."""

    def __init__(self, site: str, limit: str, retry_after: float) -> None:
        self.site, self.limit, self.retry_after = site, limit, retry_after
        super().__init__(f"{site}: over its rate limit of {limit}")


class BudgetFull(SiteUnavailable):
    """Starting the site would take the sites' memory limits past the budget, and no idle site can make room."""

    retry_after = 10

    def __init__(self, site: str, need: int, used: int, budget: int) -> None:
        self.need, self.used, self.budget = need, used, budget
        mib = 1 << 20
        super().__init__(
            site,
            f"memory budget full: it needs {need // mib} MiB, {used // mib} of {budget // mib} MiB are held "
            "by sites that cannot be stopped now",
            "memory budget full",
        )


class SwapFailed(Exception):
    """A new release's container did not take over: the old one serves on."""

    def __init__(self, site: str, reason: str) -> None:
        self.site, self.reason = site, reason
        super().__init__(f"{site}: the new release did not take over: {reason}")
