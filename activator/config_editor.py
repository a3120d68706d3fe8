"""The [editor] table: where the editor is served, how each site's preview is named, when development
containers stop, and how long login links and sessions last."""

from __future__ import annotations

from dataclasses import dataclass

from activator.config_values import (
    _HOST,
    HostPort,
    _positive,
    _Table,
    _typed,
    parse_duration,
    parse_listen,
)


@dataclass(frozen=True)
class EditorConfig:
    host: str = ""  # "": no editor (the sidecar does not run)
    preview_host: str = "{site}-dev.localhost"  # each site's workspace, served as its dev server sees it
    idle_timeout: float = 1800.0  # a development container with no edit and no preview request this long stops
    listen: HostPort = HostPort("127.0.0.1", 9002)  # noqa: RUF009 - the editor service, behind Caddy's `host`
    token_ttl: float = 3600.0  # a login link works this long, once
    session_ttl: float = 12 * 3600.0

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def preview_of(self, site: str) -> str:
        return self.preview_host.replace("{site}", site)


def _host_name(value: object) -> str:
    text = _typed(str, "a host name like 'editor.example.com'")(value).lower()
    if not _HOST.match(text) or text.startswith("*."):
        raise ValueError("expected a host name like 'editor.example.com' (no scheme, no port, no wildcard)")
    return text


def _preview_host(value: object) -> str:
    text = _typed(str, "a host name with {site}, like '{site}-dev.example.com'")(value).lower()
    if "{site}" not in text or not _HOST.match(text.replace("{site}", "site")):
        raise ValueError("expected a host name with {site} in it, like '{site}-dev.example.com'")
    return text


def read_editor(t: _Table) -> EditorConfig:
    d = EditorConfig()
    editor = EditorConfig(
        host=t.get("host", _host_name, d.host),
        preview_host=t.get("preview_host", _preview_host, d.preview_host),
        idle_timeout=t.get("idle_timeout", _positive(parse_duration), d.idle_timeout),
        listen=t.get("listen", parse_listen, d.listen),
        token_ttl=t.get("token_ttl", _positive(parse_duration), d.token_ttl),
        session_ttl=t.get("session_ttl", _positive(parse_duration), d.session_ttl),
    )
    t.done()
    return editor
