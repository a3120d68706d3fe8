"""Which site a request's Host belongs to, as Caddy's host matcher decides it (pure).

Case-insensitive and without the port; exact names first, then a wildcard `*.suffix`, whose `*` stands for exactly
one label: `*.example.com` matches `a.example.com`, not `example.com`, not `a.b.example.com`."""

from __future__ import annotations

from collections.abc import Iterable


def host_name(host: str) -> str:
    """A Host header's name: lowercase, without the port, an IPv6 literal without its brackets."""
    host = host.strip().lower()
    if host.startswith("["):  # "[::1]:8080", "[::1]"
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, colon, port = host.rpartition(":")
    # One colon: name and port. More: an IPv6 literal without brackets (no port can be told from it).
    if colon and name and ":" not in name and (port.isdigit() or not port):
        return name
    return host


class HostTable:
    """Built from (host, site) pairs, a host being a name or `*.suffix`; the config makes each host unique."""

    def __init__(self, hosts: Iterable[tuple[str, str]]) -> None:
        self._exact: dict[str, str] = {}
        self._wild: dict[str, str] = {}  # by the suffix after "*."
        for host, site in hosts:
            host = host.lower()
            if host.startswith("*."):
                self._wild[host[2:]] = site
            else:
                self._exact[host] = site

    def site(self, host: str) -> str | None:
        """The site the Host header `host` belongs to, or None."""
        name = host_name(host)
        exact = self._exact.get(name)
        if exact is not None:
            return exact
        label, dot, suffix = name.partition(".")
        return self._wild.get(suffix) if label and dot else None
