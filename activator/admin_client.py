"""The commands that ask the running activator, over its admin socket: `dialup deploy`, `dialup rollback` and
`dialup reload` (one path with the editor and the API); and `dialup releases`, read from SQLite, up or not."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from activator.builds.releases import Releases
from activator.config import Config
from activator.config_values import parse_listen
from activator.editor.access import Access
from activator.store import Store

NOT_RUNNING = "dialup up is not running on this state directory: deploys are made by it (start it first)"


class NotRunning(Exception):
    pass


async def deploy(config: Config, site: str, folder: str | None, output: bool) -> bool:
    query: dict[str, str] = {}
    if folder is not None:
        query["from"] = folder
    if output:
        query["output"] = "1"
    return await _stream(config, f"/sites/{site}/deploy", query)


async def rollback(config: Config, site: str) -> bool:
    return await _stream(config, f"/sites/{site}/rollback", {})


async def _stream(config: Config, path: str, query: dict[str, str]) -> bool:
    """Print the progress lines as they come; True when the last says the release is live."""
    connector = aiohttp.UnixConnector(path=str(config.server.admin_socket))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.post(f"http://localhost{path}", params=query) as response,
        ):
            if response.status != 200:
                print(f"dialup: {(await response.text()).strip()}", file=sys.stderr)
                return False
            ok = False  # until the last line says the release is live
            try:
                async for raw in response.content:
                    ok = _show(orjson.loads(raw))
            except (aiohttp.ClientPayloadError, ValueError) as exc:
                print(f"dialup: the progress stopped short ({exc}): see `dialup releases` and the log", file=sys.stderr)
                return False
            return ok
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        raise NotRunning(NOT_RUNNING) from None


def _show(event: dict[str, Any]) -> bool:
    step = event.pop("step")
    elapsed = event.pop("elapsed", None)
    stamp = f"[{elapsed:7.2f}s] " if elapsed is not None else ""
    if step == "output":
        print(f"{stamp}  | {event['line']}")
        return False
    if step == "result":
        if event["ok"]:
            print(f"live: {event['release']}")
            return True
        print(f"dialup: deploy failed: {event['reason']}", file=sys.stderr)
        for line in event.get("tail") or []:
            print(f"  | {line}", file=sys.stderr)
        print("the live release keeps serving", file=sys.stderr)
        return False
    details = " ".join(f"{k}={v}" for k, v in event.items())
    print(f"{stamp}{step} {details}".rstrip())
    return False


async def reload(config: Config) -> tuple[bool, dict[str, Any]]:
    """Ask the running activator to apply its config file again (the file was checked here first)."""
    connector = aiohttp.UnixConnector(path=str(config.server.admin_socket))
    try:
        async with aiohttp.ClientSession(connector=connector) as session, session.post("http://localhost/reload") as r:
            if r.content_type != "application/json":
                return False, {"error": f"{r.status}: {(await r.text()).strip()[:200]}"}
            report: dict[str, Any] = await r.json()
            return bool(report.pop("ok")), report
    except (aiohttp.ClientConnectionError, FileNotFoundError):
        raise NotRunning("dialup up is not running on this state directory: nothing to reload") from None


async def releases(config: Config, site: str) -> list[dict[str, Any]]:
    store = Store(config.server.db_path)
    await store.open()
    try:
        table = Releases(store.db)
        await table.open()
        return [r.as_json() for r in await table.of(site)]
    finally:
        await store.close()


def print_releases(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no releases yet")
        return
    print(f"{'RELEASE':8} {'LIVE':4} {'SOURCE':12} {'BUILD_S':>8} {'WENT_LIVE':19}  ARTIFACT")
    for r in rows:
        went = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["live_at"])) if r["live_at"] else "-"
        artifact = r["artifact"] + (" (removed)" if r["removed"] else "")
        print(
            f"{r['id']:8} {'*' if r['live'] else '':4} {r['source_hash'][:12]:12} {r['build_seconds']:8.2f} {went:19}"
            f"  {artifact if r['kind'] == 'image' else Path(artifact).name + ' (files)'}"
        )


class NoSuchSite(Exception):
    pass


async def editor_token(config: Config, site: str, now: float) -> str:
    """A login link to edit the site in the browser (its token stored as a hash: shown once, here)."""
    if not config.editor.enabled:
        raise NoSuchSite("there is no [editor] host in the config: set one to edit sites in the browser")
    if site not in {s.name for s in config.sites if not s.develops}:  # a development site is edited as its site
        raise NoSuchSite(f"no site {site!r} in {config.path}")
    store = Store(config.server.db_path)
    await store.open()
    try:
        access = Access(store.db)
        await access.open()
        token = await access.issue_token(site, now, config.editor.token_ttl)
    finally:
        await store.close()
    return f"{editor_origin(config)}/sites/{site}/login?token={token}"


def editor_origin(config: Config) -> str:
    """How a browser reaches the editor through Caddy: its scheme, host and (if not the scheme's) port."""
    scheme = "https" if config.caddy.automatic_https else "http"
    port = parse_listen(config.caddy.http_listen).port
    shown = "" if port in (80, 443) else f":{port}"
    return f"{scheme}://{config.editor.host}{shown}"
