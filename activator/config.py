"""One TOML file -> frozen dataclasses, validated once; every error names the file, the key and the value."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from activator.config_admin import CostConfig, HistoryConfig, read_cost, read_history
from activator.config_backups import BackupsConfig as BackupsConfig  # re-exported, as CaddyConfig
from activator.config_backups import read_backups
from activator.config_builds import BuildsConfig as BuildsConfig  # re-exported, as CaddyConfig
from activator.config_builds import read_builds
from activator.config_caddy import CaddyConfig as CaddyConfig  # re-exported: callers import it from here
from activator.config_caddy import read_caddy
from activator.config_editor import EditorConfig as EditorConfig  # re-exported, as CaddyConfig
from activator.config_editor import read_editor
from activator.config_values import (
    _MISSING,
    _capabilities,
    _dir_value,
    _enum,
    _env,
    _hosts,
    _name,
    _non_negative,
    _number,
    _path_value,
    _percent,
    _port,
    _positive,
    _shares,
    _strings,
    _Table,
    _typed,
    parse_duration,
    parse_listen,
    parse_optional_duration,
    parse_optional_size,
    parse_size,
    unsafe_capabilities,
)
from activator.config_values import ConfigError as ConfigError  # re-exported: callers import it from here
from activator.config_values import HostPort as HostPort
from activator.core.ratelimit import RateLimit
from activator.core.rates import HORIZON
from activator.editor import devserver
from activator.model import ActivitySource, Kind, Network, Strategy


@dataclass(frozen=True)
class ServerConfig:
    state_dir: Path = Path("/var/lib/dialup")
    listen: HostPort = HostPort("127.0.0.1", 9000)  # noqa: RUF009 - HostPort is frozen (see config_values)
    # Labels every container with this name, so several deployments (or test runs) share one engine.
    name: str = "dialup"
    # Where per-site request counts come from: Caddy's per-host metrics, or its access log streamed to
    # access_log_listen.
    activity: ActivitySource = ActivitySource.METRICS
    access_log_listen: HostPort = HostPort("127.0.0.1", 9001)  # noqa: RUF009 - as above
    reaper_interval: float = 1.0  # how often idle sites are looked at
    monitor_interval: float = 5.0  # how often host and container figures are read

    @property
    def temp_dir(self) -> Path:
        return self.state_dir / "temp"

    @property
    def system_dir(self) -> Path:
        return self.state_dir / "system"

    @property
    def admin_socket(self) -> Path:
        return self.system_dir / "dialup.sock"

    @property
    def db_path(self) -> Path:
        return self.system_dir / "dialup.db"

    @property
    def user_sites_dir(self) -> Path:
        """Each site's releases (user-sites/SITE/releases/rN) and its live one (user-sites/SITE/current)."""
        return self.state_dir / "user-sites"

    @property
    def workspaces_dir(self) -> Path:
        """The editor's workspaces (dev-workspaces/SITE): deployable as sources, like source_roots."""
        return self.state_dir / "dev-workspaces"

    @property
    def dev_cache_dir(self) -> Path:
        """Each development container's installed packages (dev-cache/SITE), kept between its runs."""
        return self.state_dir / "dev-cache"

    @property
    def routes_dir(self) -> Path:
        """One file per site, the address Caddy sends its requests to (proxy/render.py)."""
        return self.state_dir / "routes"


@dataclass(frozen=True)
class SiteConfig:
    name: str
    hosts: tuple[str, ...]
    image: str  # "": built from `source` (see release)
    port: int
    kind: Kind = Kind.STATIC
    strategy: Strategy = Strategy.LAZY
    start_timeout: float = 30.0
    health_path: str = "/"
    memory: int = 0  # bytes; 0 means the kind's default
    max_waiting: int = 1000
    command: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    idle_timeout: float | None = 300.0  # None: never stopped for idleness
    pause_after: float | None = None  # None: never paused
    drain_timeout: float = 30.0
    stop_grace: float = 10.0
    restart_backoff: float = 1.0
    restart_backoff_max: float = 60.0

    cpus: float = 0.0  # 0: the kind's default
    cpu_shares: int = 0  # 0: the kind's default
    cap_add: tuple[str, ...] = ()  # every capability is dropped but these
    read_only: bool = False  # a read-only root filesystem with a tmpfs /tmp
    network: Network = Network.HOLDER
    max_body: int | None = 100 * 1024 * 1024  # a request body larger is answered 413 (None: no limit)
    compress: bool = True  # text responses compressed (zstd, gzip) for clients that accept it
    source: Path | None = None  # a folder of the site's files, built by dialup (activator/builds/)
    release: str = ""  # the image of the live release built from `source` (set from the releases, not the file)
    # A development container ([editor]; never from the file): the site whose workspace it runs, the folders
    # bound into it (host path, path inside, read-only), and who it runs as ("uid:gid"; "": the image's user).
    develops: str = ""
    mounts: tuple[tuple[str, str, bool], ...] = ()
    user: str = ""
    workdir: str = ""
    # strategy = "scalable": requests per minute per instance that call for a second instance; how long below
    # what one instance carries before it goes; the stable window its rate is measured over (the panic window
    # is a tenth of it: core/scaling.py).
    scale_threshold: float = 50.0
    scale_down_delay: float = 300.0
    scale_window: float = 60.0
    rate_limit: RateLimit | None = None  # over it, requests go through the activator, which answers 429s
    # A scalable site's second instance (never from the file): the site whose requests it shares.
    replica_of: str = ""

    @property
    def run_image(self) -> str:
        """The image its container runs: the live release's, else the configured one ("" before any)."""
        return self.release or self.image

    @property
    def serves_files(self) -> bool:
        """A static site built from source: its files are published and Caddy serves them, no container."""
        return self.kind is Kind.STATIC and self.source is not None and not self.image

    @property
    def memory_limit(self) -> int:
        return self.memory or self.kind.defaults.memory

    @property
    def cpu_quota(self) -> float:
        return self.cpus or self.kind.defaults.cpus

    @property
    def cpu_weight(self) -> int:
        return self.cpu_shares or self.kind.defaults.cpu_shares

    @property
    def pids_limit(self) -> int:
        return self.kind.defaults.pids


@dataclass(frozen=True)
class HolderConfig:
    """The image of the network holders (see Network.HOLDER), built from `busybox` when it is missing."""

    image: str = "dialup-holder:1"
    busybox: Path = Path("/bin/busybox")  # a static busybox: Debian's busybox-static


@dataclass(frozen=True)
class BudgetConfig:
    memory: int = int(2.1 * 1024**3)  # the sum of running and paused sites' memory limits stays within this


@dataclass(frozen=True)
class Thresholds:
    """Host health thresholds, in percent (load average: per the machine, as `uptime` shows it)."""

    memory_warning: float = 75.0
    memory_critical: float = 90.0
    cpu_warning: float = 80.0
    storage_warning: float = 85.0
    load_warning: float = 1.5
    container_memory_warning: float = 90.0  # a container at this % of its own limit ...
    sustained: int = 3  # ... (or the CPU above its warning) for this many monitor ticks in a row


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    caddy: CaddyConfig = field(default_factory=CaddyConfig)
    sites: tuple[SiteConfig, ...] = ()
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    holder: HolderConfig = field(default_factory=HolderConfig)
    builds: BuildsConfig = field(default_factory=BuildsConfig)
    editor: EditorConfig = field(default_factory=EditorConfig)
    backups: BackupsConfig = field(default_factory=BackupsConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    history: HistoryConfig = field(default_factory=HistoryConfig)

    @property
    def uses_holders(self) -> bool:
        return any(s.network is Network.HOLDER for s in self.container_sites)

    @property
    def container_sites(self) -> tuple[SiteConfig, ...]:
        """The sites that run in containers (all but the static ones served from their published files)."""
        return tuple(s for s in self.sites if not s.serves_files)


# Keys a [defaults] table may set for every site, with how each is read.
_INHERITED: dict[str, Callable[[Any], Any]] = {
    "kind": _enum(Kind),
    "strategy": _enum(Strategy),
    "start_timeout": _positive(parse_duration),
    "health_path": _path_value,
    "max_waiting": _positive(_typed(int, "a whole number")),
    "idle_timeout": parse_optional_duration,
    "pause_after": parse_optional_duration,
    "drain_timeout": _positive(parse_duration),
    "stop_grace": _non_negative(parse_duration),
    "restart_backoff": _positive(parse_duration),
    "restart_backoff_max": _positive(parse_duration),
    "network": _enum(Network),
    "max_body": parse_optional_size,
    "compress": _typed(bool, "true or false"),
}
_BUILTIN = SiteConfig(name="-", hosts=(), image="-", port=1)
SOURCE_PORT = 3000  # the port an app built from source listens on unless `port` says otherwise (its PORT)


def _site(path: Path, index: int, data: object, inherited: dict[str, Any], builds: BuildsConfig) -> SiteConfig:
    t = _Table(path, f"sites[{index}]", data)
    given = t.get("source", _dir_value, None)
    source = None if given is None else Path(os.path.abspath(path.parent / given))
    if source is not None:
        if not builds.allows(source):
            roots = ", ".join(map(str, builds.source_roots))
            raise ConfigError(
                path, t.key("source"), str(source), f"outside the allowed folders ([builds] source_roots: {roots})"
            )
    image = t.get("image", _typed(str, "an image reference like 'blog:latest'"), "" if source else _MISSING)
    if not image.strip() and source is None:
        raise ConfigError(
            path, t.key("image"), image, "expected an image reference like 'blog:latest', or a `source` folder"
        )
    cap_add = t.get("cap_add", _capabilities, ())
    allow_any = t.get("allow_any_capability", _typed(bool, "true or false"), False)
    if not allow_any and (problem := unsafe_capabilities(cap_add)):
        raise ConfigError(path, t.key("cap_add"), list(cap_add), problem)
    site = SiteConfig(
        name=t.get("name", _name),
        hosts=t.get("hosts", _hosts),
        image=image,
        port=t.get("port", _port, SOURCE_PORT if source is not None else _MISSING),
        source=source,
        memory=t.get("memory", _positive(parse_size), 0),
        command=t.get("command", _strings, None),
        env=t.get("env", _env, ()),
        cpus=t.get("cpus", _positive(_number), 0.0),
        cpu_shares=t.get("cpu_shares", _shares, 0),
        cap_add=cap_add,
        read_only=t.get("read_only", _typed(bool, "true or false"), False),
        **{key: t.get(key, convert, inherited[key]) for key, convert in _INHERITED.items()},
    )
    scaling = {key: t.get(key, convert, None) for key, convert in _SCALING.items()}
    given_scaling = {key: value for key, value in scaling.items() if value is not None}
    if given_scaling and site.strategy is not Strategy.SCALABLE:
        key, value = next(iter(given_scaling.items()))
        raise ConfigError(path, t.key(key), value, 'only for a site with strategy = "scalable"')
    rate_limit = t.get("rate_limit", RateLimit.parse, None)
    site = replace(site, rate_limit=rate_limit, **given_scaling)
    if site.serves_files and (rate_limit is not None or site.strategy is Strategy.SCALABLE):
        key, value = ("rate_limit", t.raw("rate_limit")) if rate_limit is not None else ("strategy", "scalable")
        raise ConfigError(
            path, t.key(key), value, "Caddy serves this static site's files itself: give it an image to have one"
        )
    t.done()
    return site


_SCALING: dict[str, Callable[[Any], Any]] = {
    "scale_threshold": _positive(_number),
    "scale_down_delay": _positive(parse_duration),
    "scale_window": lambda value: _scale_window(parse_duration(value)),
}


def _scale_window(seconds: float) -> float:
    if not 6.0 <= seconds <= HORIZON:  # the rates are kept this long (core/rates.py)
        raise ValueError(f"must be between 6s and {HORIZON:g}s")
    return seconds


REPLICA_SUFFIX = ".2"  # a scalable site's second instance: its name and this (a dot no site's name can hold)


def replica_site(site: SiteConfig) -> SiteConfig:
    """The second instance of a scalable site: the same container settings and hosts (which it serves through the
    site's route; requests find the site, never it), never started by a request nor stopped for idleness (the
    Scaler decides)."""
    return replace(
        site,
        name=site.name + REPLICA_SUFFIX,
        strategy=Strategy.LAZY,
        source=None,
        rate_limit=None,
        replica_of=site.name,
    )


DEV_KINDS = frozenset({Kind.NODE, Kind.ASTRO, Kind.NEXT})  # the recipes' kinds: a static site's preview is its files


def development_site(site: SiteConfig, editor: EditorConfig, builds: BuildsConfig, server: ServerConfig) -> SiteConfig:
    """The development container of a site built from source (activator/editor/devserver.py)."""
    uid, gid = devserver.dev_user()
    return SiteConfig(
        name=site.name + devserver.SUFFIX,
        hosts=(editor.preview_of(site.name),),
        image=builds.node_image,
        port=site.port,
        kind=Kind.DEVELOPMENT,
        start_timeout=max(site.start_timeout, devserver.START_TIMEOUT),
        command=devserver.command(site.kind),
        env=devserver.environment(site.port) + site.env,
        idle_timeout=editor.idle_timeout,
        network=site.network,
        develops=site.name,
        mounts=devserver.mounts(server.workspaces_dir / site.name, server.dev_cache_dir / site.name),
        user=f"{uid}:{gid}",
        workdir="/app",
    )


def load_config(path: Path | str) -> Config:
    """Read and validate a config file, or raise ConfigError naming the file, key and value."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(path, "(file)", str(path), "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", str(exc), "not valid TOML") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", str(path), str(exc)) from None
    root = _Table(path, "", raw)

    s = _Table(path, "server", root.get("server", dict, {}))
    base = ServerConfig()
    server = ServerConfig(
        # Relative: to the config file's directory (as the demo's is), so every command finds the same one.
        state_dir=Path(os.path.abspath(path.parent / s.get("state_dir", _dir_value, str(base.state_dir)))),
        listen=s.get("listen", parse_listen, base.listen),
        name=s.get("name", _name, base.name),
        access_log_listen=s.get("access_log_listen", parse_listen, base.access_log_listen),
        reaper_interval=s.get("reaper_interval", _positive(parse_duration), base.reaper_interval),
        monitor_interval=s.get("monitor_interval", _positive(parse_duration), base.monitor_interval),
    )
    activity = s.get("activity", _enum(ActivitySource), None)  # its default depends on [caddy]: see below
    s.done()

    b = _Table(path, "budget", root.get("budget", dict, {}))
    budget = BudgetConfig(memory=b.get("memory", _positive(parse_size), BudgetConfig().memory))
    b.done()

    th = _Table(path, "thresholds", root.get("thresholds", dict, {}))
    tb = Thresholds()
    thresholds = Thresholds(
        memory_warning=th.get("memory_warning", _percent, tb.memory_warning),
        memory_critical=th.get("memory_critical", _percent, tb.memory_critical),
        cpu_warning=th.get("cpu_warning", _percent, tb.cpu_warning),
        storage_warning=th.get("storage_warning", _percent, tb.storage_warning),
        load_warning=th.get("load_warning", _positive(_number), tb.load_warning),
        container_memory_warning=th.get("container_memory_warning", _percent, tb.container_memory_warning),
        sustained=th.get("sustained", _positive(_typed(int, "a whole number")), tb.sustained),
    )
    th.done()
    if thresholds.memory_critical <= thresholds.memory_warning:
        raise ConfigError(
            path, "thresholds.memory_critical", thresholds.memory_critical, "must be above thresholds.memory_warning"
        )

    caddy = read_caddy(_Table(path, "caddy", root.get("caddy", dict, {})))
    # Over HTTPS, Caddy's per-host metrics give every Host header a series of its own (a certificate vouches
    # for the name a client asked for in TLS, not for the Host it sends after): anyone could grow them without
    # end. So with automatic HTTPS, activity comes from the access log unless the file says otherwise.
    server = replace(
        server,
        activity=activity or (ActivitySource.LOG if caddy.automatic_https else ActivitySource.METRICS),
    )

    h = _Table(path, "holder", root.get("holder", dict, {}))
    hb = HolderConfig()
    holder = HolderConfig(
        image=h.get("image", _typed(str, "an image reference like 'dialup-holder:1'"), hb.image),
        busybox=Path(h.get("busybox", _path_value, str(hb.busybox))),
    )
    h.done()

    builds = read_builds(_Table(path, "builds", root.get("builds", dict, {})), path.parent)
    editor = read_editor(_Table(path, "editor", root.get("editor", dict, {})))
    backups = read_backups(_Table(path, "backups", root.get("backups", dict, {})), path.parent)
    cost = read_cost(_Table(path, "cost", root.get("cost", dict, {})))
    history = read_history(_Table(path, "history", root.get("history", dict, {})))

    d = _Table(path, "defaults", root.get("defaults", dict, {}))
    inherited = {key: d.get(key, convert, getattr(_BUILTIN, key)) for key, convert in _INHERITED.items()}
    d.done()

    raw_sites = root.get("sites", _typed(list, "an array of [[sites]] tables"), [])
    sites = tuple(_site(path, i, data, inherited, builds) for i, data in enumerate(raw_sites))
    root.done()
    if editor.enabled:
        sites += tuple(
            development_site(s, editor, builds, server) for s in sites if s.source is not None and s.kind in DEV_KINDS
        )

    sites += tuple(replica_site(s) for s in sites if s.strategy is Strategy.SCALABLE)

    seen_names: set[str] = set()
    seen_hosts: dict[str, str] = {}
    for i, site in enumerate(sites):
        # A development site is named after its site and takes its host from [editor] preview_host: a clash
        # is that setting's.
        dev = site.develops
        name_key, hosts_key = ("editor.preview_host",) * 2 if dev else (f"sites[{i}].name", f"sites[{i}].hosts")
        if site.name in seen_names:
            why = f"the development site of {site.develops!r} is named so" if site.develops else ""
            raise ConfigError(path, name_key, site.name, f"duplicate site name{' (' + why + ')' if why else ''}")
        seen_names.add(site.name)
        for host in () if site.replica_of else site.hosts:
            if host in seen_hosts:
                raise ConfigError(path, hosts_key, host, f"host already used by site {seen_hosts[host]!r}")
            seen_hosts[host] = site.name
    if editor.enabled:  # the editor's host, and each static site's preview host (Caddy serves its files)
        previews = [(editor.preview_of(s.name), s.name) for s in sites if s.serves_files]
        for host, owner in [(editor.host, "the editor"), *previews]:
            if host in seen_hosts:
                key = "editor.host" if owner == "the editor" else "editor.preview_host"
                raise ConfigError(path, key, host, f"host already used by site {seen_hosts[host]!r}")
            seen_hosts[host] = owner
    return Config(
        path=path,
        server=server,
        caddy=caddy,
        sites=sites,
        budget=budget,
        thresholds=thresholds,
        holder=holder,
        builds=builds,
        editor=editor,
        backups=backups,
        cost=cost,
        history=history,
    )
