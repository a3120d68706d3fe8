"""The `dialup` command: up, check, caddy-config, status, down, deploy, rollback, releases, reload, editor-token,
backup, backups, restore."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from activator import admin_client, statedir, statelock
from activator.admin import report as history_report
from activator.admin_client import NotRunning
from activator.backups.restic import ResticFailed
from activator.builds.releases import Releases
from activator.config import Config, ConfigError, load_config
from activator.config_backups import BackupClass
from activator.core.sizes import SIZES
from activator.errors import AlreadyRunning, RuntimeUnavailable, StateDirRefused
from activator.model import Container, Network
from activator.proxy.caddy import CaddyAdmin, CaddyError
from activator.proxy.render import render
from activator.runtime.docker import DockerRuntime
from activator.status import offline_status
from activator.store import Store

EXIT_BAD_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dialup", description="Scale-to-zero Docker sites behind Caddy.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "run the activator in the foreground (starts Caddy when caddy.manage = true)"),
        ("check", "validate the config file"),
        ("caddy-config", "print the Caddy JSON config dialup would load"),
        ("status", "print every site's state, container, memory limit and starts"),
        ("down", "stop every site's container and the Caddy that dialup manages"),
        ("deploy", "build a site from its source (or --from DIR) and make the new release live"),
        ("rollback", "make the site's previous release live again (no rebuild)"),
        ("releases", "list a site's releases, and which one is live"),
        ("reload", "apply the edited config file to the running dialup up (as SIGHUP does), without a restart"),
        ("editor-token", "print a link that logs in to edit SITE in the browser (once, within [editor] token_ttl)"),
        ("backup", "back up now (sites and config; --include-db or --only CLASS), then verify: exit 0 only then"),
        ("backups", "list the snapshots of each class, what each added, the last verification and failure"),
        ("restore", "restore a backup into a new folder: state, sources, a config pointing at them, images"),
        ("migrate", "back up everything now and write a bundle with the steps to move to a server of another size"),
        ("recommend", "print limits that fit each site's peak memory of the last 7 days, and each site's cost"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("-c", "--config", required=True, help="the TOML config file")
        if name in ("deploy", "rollback", "releases", "editor-token"):
            cmd.add_argument("site", help="the site's name")
        if name == "deploy":
            cmd.add_argument("--from", dest="folder", help="build from this folder instead of the site's source")
            cmd.add_argument("--output", action="store_true", help="show the build's output")
        if name in ("status", "releases", "backups"):
            cmd.add_argument("--json", action="store_true", help="print JSON")
        if name == "backup":
            cmd.add_argument("--include-db", action="store_true", help="the database too")
            cmd.add_argument("--only", choices=[c.value for c in BackupClass], help="this class alone")
        if name == "restore":
            cmd.add_argument("snapshot", nargs="?", help="a sites snapshot's id (default: the newest)")
            where = cmd.add_mutually_exclusive_group(required=True)
            where.add_argument("--target-dir", help="a new folder to restore into")
            where.add_argument("--in-place", action="store_true",
                               help="over this deployment's state directory and sources (stopped first; the old ones "
                               "kept beside them)")  # fmt: skip
            cmd.add_argument("--name", help="the restored deployment's [server] name (default: the backup's)")
        if name in ("restore", "migrate"):
            required = name == "migrate"
            flag = "--target-size" if required else "--size"
            cmd.add_argument(flag, dest="size", choices=sorted(SIZES), required=required,
                             help="the server's size: the memory budget and builds' share scaled to it")  # fmt: skip
        if name == "migrate":
            cmd.add_argument("--bundle", required=True, help="a folder for the bundle (the steps, the restore config)")
    return parser


async def _status(config: Config) -> dict[str, Any]:
    """The running activator's view when it answers on its admin socket; else Docker's and the event log's."""
    with suppress(OSError, aiohttp.ClientError):
        connector = aiohttp.UnixConnector(path=str(config.server.admin_socket))
        async with aiohttp.ClientSession(connector=connector) as s, s.get("http://localhost/status") as r:
            live: dict[str, Any] = await r.json()
            return live
    statedir.prepare(config.server)  # the event log is opened (made if need be) in it
    runtime = DockerRuntime(config.server.name, workers=2)
    await runtime.open()
    store = Store(config.server.db_path)
    await store.open()
    try:
        releases = Releases(store.db)
        await releases.open()
        return await offline_status(config, runtime, store, await releases.live_ids())
    finally:
        await store.close()
        await runtime.close()


# (JSON key, column heading) for the table `dialup status` prints.
COLUMNS = [
    ("name", "NAME"),
    ("state", "STATE"),
    ("route", "ROUTE"),
    ("requests_per_minute", "RPM"),
    ("instances", "INSTANCES"),
    ("scale_rate", "SCALE_RPM"),
    ("rate_limit", "RATE_LIMIT"),
    ("rate_limited", "LIMITING"),
    ("refused", "REFUSED_429"),
    ("last_request_age_s", "LAST_REQ_S"),
    ("in_flight", "IN_FLIGHT"),
    ("starts", "STARTS"),
    ("wakes", "WAKES"),
    ("last_start_ms", "LAST_START_MS"),
    ("crashes", "CRASHES"),
    ("memory_used", "MEM_USED"),
    ("memory_limit", "MEM_LIMIT"),
    ("cpu_shares", "CPU_SHARES"),
    ("network", "NETWORK"),
    ("container_id", "CONTAINER"),
    ("holder_id", "HOLDER"),
    ("release", "RELEASE"),
    ("deploy", "DEPLOY"),
]


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value // 2**20}MiB" if key in ("memory_limit", "memory_used") else str(value)


def _print_status(status: dict[str, Any]) -> None:
    budget = status["budget"]
    holders = f" (holders: {budget['holders'] / 2**20:.1f} MiB)" if budget.get("holders") else ""
    print(
        f"memory budget: {budget['used'] // 2**20} of {budget['total'] // 2**20} MiB held by running and paused sites"
        f"{holders}"
    )
    for name, figure in (status.get("host") or {}).items():
        value = "-" if figure["value"] is None else f"{figure['value']:.1f}"
        bounds = ", ".join(f"{k} {figure[k]:g}" for k in ("warning", "critical") if k in figure)
        print(f"host {name}: {value} ({bounds}): {figure['level']}")
    for kind, row in (status.get("backups") or {}).items():
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["last_success"])) if row["last_success"] else "never"
        due = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["next_run"])) if row["next_run"] else "-"
        failing = f"; FAILING: {row['failing']}" if row["failing"] else ""
        print(f"backup {kind}: last {last}, next {due}{failing}")
    _print_table(status["sites"])


def _print_table(rows: list[dict[str, Any]]) -> None:
    shown = [[_cell(key, r.get(key)) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(head), *(len(row[i]) for row in shown)) for i, (_, head) in enumerate(COLUMNS)]
    print("  ".join(head.ljust(w) for (_, head), w in zip(COLUMNS, widths, strict=True)).rstrip())
    for row in shown:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


async def _halt(runtime: DockerRuntime, container: Container | None, grace: float) -> None:
    """Stop a running or paused container. A paused one is unpaused first, so that its app takes the SIGTERM awake
    rather than relying on what the engine does with a signal to frozen processes (20.10 thaws them after it)."""
    if container is None or not (container.running or container.paused):
        return
    if container.paused:
        await runtime.unpause(container.id)
    await runtime.stop(container.id, grace)


def _hold_for_down(config: Config) -> None:
    """`down` while `up` runs would be undone at once (persistent sites kept up, a managed Caddy restarted):
    refuse it, naming the process to stop. Held until `down` ends, so that no `up` starts meanwhile."""
    if not config.server.system_dir.is_dir():
        return  # no `up` ever ran on this state directory: nothing holds it
    try:
        statelock.hold(config.server.system_dir)
    except AlreadyRunning as exc:
        advice = ": stop it first (`systemctl stop dialup`, or Ctrl-C), then run `dialup down`"
        raise AlreadyRunning(exc.path, exc.pid, advice) from None


async def _down(config: Config) -> None:
    _hold_for_down(config)
    runtime = DockerRuntime(config.server.name, workers=4)
    await runtime.open()
    try:
        found = [await runtime.find(site) for site in config.sites]
        await asyncio.gather(*(_halt(runtime, c, 10) for c in found))
        # Then the holders: their namespaces go with them; `up` starts them again, and the sites join on start.
        holders = [await runtime.find_holder(site) for site in config.sites if site.network is Network.HOLDER]
        await asyncio.gather(*(_halt(runtime, h, 1) for h in holders))
    finally:
        await runtime.close()
    if config.caddy.manage:
        admin = CaddyAdmin(config.caddy.admin)
        await admin.open()
        try:
            if await admin.alive():
                await admin.request("POST", "/stop")
        finally:
            await admin.close()


def _backups(config: Config, args: argparse.Namespace) -> int:
    from activator.backups import commands, restore
    from activator.backups.service import restic_for

    try:
        if args.command == "backup":
            return 0 if asyncio.run(commands.backup(config, commands.classes(args.only, args.include_db))) else 1
        if args.command == "migrate":
            return 0 if asyncio.run(commands.migrate(config, args.size, Path(os.path.abspath(args.bundle)))) else 1
        if args.command == "backups":
            listing = asyncio.run(commands.listing(config))
            if args.json:
                sys.stdout.buffer.write(orjson.dumps(listing, option=orjson.OPT_INDENT_2) + b"\n")
            else:
                commands.print_listing(listing)
            return 0
        if not config.backups.enabled:
            raise commands.NoBackups(f"{config.path}: there is no [backups] table (its repository says where)")
        # Its cache beside the restore, not in the config's state directory (a restore's config may be only a
        # [backups] table: its state_dir would be the default one).
        cache = Path(tempfile.mkdtemp(prefix="dialup-restore-cache-"))
        restic = restic_for(config)
        restic.cache_dir = cache
        say = functools.partial(print, file=sys.stderr)
        try:
            if args.in_place:
                asyncio.run(_down(config))  # (refused while `dialup up` runs: it holds the state directory)
                aside = asyncio.run(restore.restore_in_place(restic, config.builds.docker, config, args.snapshot, say))
                print(f"restored in place (what was there: {aside}): bring it up with `dialup up -c {config.path}`")
                return 0
            written = asyncio.run(
                restore.restore(
                    restic, config.builds.docker, Path(os.path.abspath(args.target_dir)), args.snapshot, args.name,
                    say, SIZES[args.size] if args.size else None,
                )
            )  # fmt: skip
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        if written:
            print(f"restored: bring it up with `dialup up -c {written}`")
        return 0
    except (commands.NoBackups, restore.RestoreFailed, ResticFailed) as exc:
        print(f"dialup: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"dialup: bad config: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            print(f"{config.path}: ok, {len(config.sites)} sites")
        elif args.command == "caddy-config":
            sys.stdout.buffer.write(orjson.dumps(render(config), option=orjson.OPT_INDENT_2) + b"\n")
        elif args.command == "status":
            status = asyncio.run(_status(config))
            if args.json:
                sys.stdout.buffer.write(orjson.dumps(status, option=orjson.OPT_INDENT_2) + b"\n")
            else:
                _print_status(status)
        elif args.command == "down":
            asyncio.run(_down(config))
        elif args.command in ("deploy", "rollback"):
            if args.command == "deploy":
                ok = asyncio.run(
                    admin_client.deploy(config, args.site, args.folder and os.path.abspath(args.folder), args.output)
                )
            else:
                ok = asyncio.run(admin_client.rollback(config, args.site))
            return 0 if ok else 1
        elif args.command == "reload":
            ok, report = asyncio.run(admin_client.reload(config))
            if not ok:
                print(f"dialup: reload refused, nothing changed: {report['error']}", file=sys.stderr)
                return 1
            changed = ", ".join(f"{name} ({how})" for name, how in report["changed"].items()) or "none"
            print(
                f"added: {', '.join(report['added']) or 'none'}; removed: {', '.join(report['removed']) or 'none'};"
                f" changed: {changed}"
            )
            for name, why in report.get("failed", {}).items():
                print(f"dialup: {name}: not applied ({why}); the next reload tries again", file=sys.stderr)
            return 1 if report.get("failed") else 0
        elif args.command == "editor-token":
            try:
                statedir.prepare(config.server)  # the token is stored (hashed) in its database
                print(asyncio.run(admin_client.editor_token(config, args.site, time.time())))
            except admin_client.NoSuchSite as exc:
                print(f"dialup: {exc}", file=sys.stderr)
                return EXIT_BAD_CONFIG
        elif args.command == "releases":
            rows = asyncio.run(admin_client.releases(config, args.site))
            if args.json:
                sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
            else:
                admin_client.print_releases(rows)
        elif args.command in ("backup", "backups", "restore", "migrate"):
            return _backups(config, args)
        elif args.command == "recommend":
            print("\n".join(asyncio.run(history_report.report(config, time.time()))))
        elif args.command == "up":
            from activator.app import serve

            try:
                import uvloop

                uvloop.install()
            except ImportError:  # pragma: no cover - uvloop is a dependency, but the loop works without it
                pass
            asyncio.run(serve(config))
    except (RuntimeUnavailable, CaddyError, AlreadyRunning, StateDirRefused, NotRunning) as exc:
        print(f"dialup: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
