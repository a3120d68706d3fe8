"""How each value of the TOML file is read and checked: durations, sizes, 'host:port', names, host names,
numbers and the like, and the table reader that names every key it complains about (as ConfigError)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_HOST = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class ConfigError(Exception):
    """A bad config file: which file, which key, which value, and what is wrong with it."""

    def __init__(self, path: Path | str, key: str, value: object, problem: str) -> None:
        self.path, self.key, self.value, self.problem = str(path), key, value, problem
        shown = "(missing)" if value is _MISSING else repr(value)
        super().__init__(f"{self.path}: {key} = {shown}: {problem}")


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_duration(text: object) -> float:
    if isinstance(text, bool):
        raise ValueError("expected a duration like '30s' or '500ms'")
    if isinstance(text, int | float):
        return float(text)
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError("expected a duration like '30s' or '500ms'")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def parse_optional_duration(text: object) -> float | None:
    """A duration, or "off" (also 0) for never."""
    if text == "off" or text == 0:
        return None
    value = parse_duration(text)
    if value < 0:
        raise ValueError("expected a duration like '5m', or 'off'")
    return value if value > 0 else None


def parse_size(text: object) -> int:
    if isinstance(text, bool):
        raise ValueError("expected a size like '64MiB'")
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text).strip())
    if not m:
        raise ValueError("expected a size like '64MiB' (units are binary, as in Docker)")
    unit = (m.group(2) or "b")[0].lower()
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_optional_size(text: object) -> int | None:
    """A size, or "off" for no limit."""
    if text == "off":
        return None
    size = parse_size(text)
    if size <= 0:
        raise ValueError("expected a size like '100MiB', or 'off'")
    return size


def parse_listen(text: object) -> HostPort:
    if not isinstance(text, str) or ":" not in text:
        raise ValueError("expected 'host:port'")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected 'host:port' with a port from 1 to 65535")
    return HostPort(host or "127.0.0.1", int(port))


class _Table:
    """Reads one TOML table, naming every key it complains about by its full dotted path."""

    def __init__(self, path: Path, prefix: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, prefix, data, "expected a table")
        self.path, self.prefix, self.data = path, prefix, dict(data)
        self._read: dict[str, object] = {}

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, convert: Callable[[Any], T], default: T | Any = _MISSING) -> T:
        value = self.data.pop(name, _MISSING)
        self._read[name] = value
        if value is _MISSING:
            if default is _MISSING:
                raise ConfigError(self.path, self.key(name), value, "is required")
            return default
        try:
            return convert(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(self.path, self.key(name), value, str(exc)) from None

    def raw(self, name: str) -> object:
        """A value as the file gave it, once read (for an error about it)."""
        return self._read.get(name)

    def done(self) -> None:
        for name, value in self.data.items():
            raise ConfigError(self.path, self.key(name), value, "unknown key")


def _typed(kind: type[T], what: str) -> Callable[[Any], T]:
    def check(value: Any) -> T:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {what}")
        return value

    return check


def _enum(kind: type[T]) -> Callable[[Any], T]:
    def convert(value: Any) -> T:
        try:
            return kind(value)  # type: ignore[call-arg]
        except ValueError:
            options = " | ".join(str(m.value) for m in kind)  # type: ignore[attr-defined]
            raise ValueError(f"expected one of {options}") from None

    return convert


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("expected lowercase letters, digits and '-' (at most 40), like 'blog'")
    return value


def _hosts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("expected a non-empty list of host names")
    hosts = []
    for host in value:
        if not isinstance(host, str) or not _HOST.match(host.lower()):
            raise ValueError(f"{host!r} is not a host name (no scheme, no port)")
        hosts.append(host.lower())
    return tuple(hosts)


def _port(value: Any) -> int:
    port = _typed(int, "a port number")(value)
    if not 0 < port < 65536:
        raise ValueError("expected a port from 1 to 65535")
    return port


def _positive(parse: Callable[[Any], T]) -> Callable[[Any], T]:
    def convert(value: Any) -> T:
        result = parse(value)
        if result <= 0:  # type: ignore[operator]
            raise ValueError("must be greater than zero")
        return result

    return convert


def _at_least(low: N, parse: Callable[[Any], N]) -> Callable[[Any], N]:
    def convert(value: Any) -> N:
        result = parse(value)
        if result < low:
            raise ValueError(f"must be at least {low:g}")
        return result

    return convert


def _non_negative(parse: Callable[[Any], float]) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        result = parse(value)
        if result < 0:
            raise ValueError("must not be negative")
        return result

    return convert


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _shares(value: Any) -> int:
    shares = _typed(int, "a whole number from 2 to 262144")(value)
    if not 2 <= shares <= 262144:
        raise ValueError("expected a whole number from 2 to 262144")
    return shares


# Capabilities a site may add without `allow_any_capability = true`: a subset of what Docker grants by default,
# for apps that bind a port below 1024 or start as root and then switch to their own user (CHOWN, SETUID, SETGID,
# DAC_OVERRIDE, FOWNER: an entrypoint that chowns its data and drops privileges; KILL: a process manager
# signalling children of another user). Left out of Docker's defaults: NET_RAW (raw packets on the sites'
# network), MKNOD, SETFCAP, SETPCAP, SYS_CHROOT, AUDIT_WRITE, FSETID.
SAFE_CAPABILITIES = ("NET_BIND_SERVICE", "CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL")


def unsafe_capabilities(caps: tuple[str, ...]) -> str:
    """What is wrong with `caps` when the site does not set allow_any_capability = true ("" if nothing is)."""
    unsafe = [cap for cap in caps if cap not in SAFE_CAPABILITIES]
    if not unsafe:
        return ""
    return (
        f"{', '.join(unsafe)} not among the capabilities a site may add ({', '.join(SAFE_CAPABILITIES)});"
        " set allow_any_capability = true on the site to allow it"
    )


def _capabilities(value: Any) -> tuple[str, ...]:
    caps = _strings(value)
    for cap in caps:
        if not re.fullmatch(r"[A-Z_]+", cap.removeprefix("CAP_")):
            raise ValueError(f"{cap!r} is not a capability name like 'NET_BIND_SERVICE'")
    return tuple(c.removeprefix("CAP_") for c in caps)


def _percent(value: Any) -> float:
    number = _number(value)
    if not 0 < number <= 100:
        raise ValueError("expected a percentage from 0 to 100")
    return number


def _path_value(value: Any) -> str:
    text = _typed(str, "a path starting with '/'")(value)
    if not text.startswith("/"):
        raise ValueError("expected a path starting with '/'")
    return text


def _dir_value(value: Any) -> str:
    """A directory: absolute, or relative to the config file's directory (load_config makes it absolute)."""
    text = _typed(str, "a directory path")(value)
    if not text.strip():
        raise ValueError("expected a directory path")
    return text


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError("expected a table of strings")
    return tuple(sorted(value.items()))


def _listen_text(value: Any) -> str:
    parse_listen(value)  # validates; Caddy takes the text as it is (":80" means every address)
    return str(value)


def _caddy_admin(value: Any) -> str:
    """Caddy's admin API changes everything Caddy does (Caddy usually runs as root): a unix socket, or an address
    only this machine can reach. An empty host (":2019") would be every interface."""
    text = _typed(str, "'unix//path/to.sock' or a loopback 'host:port'")(value)
    if text.startswith("unix//"):
        return text
    try:
        parse_listen(text)
        local = _loopback(text.rpartition(":")[0])
    except ValueError:
        local = False
    if not local:
        raise ValueError(
            "expected 'unix//path/to.sock' or a loopback address and port (127.0.0.1:2019, [::1]:2019, localhost:2019)"
        )
    return text


def _loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8, or [::1] (IPv6 in brackets, as Caddy and Go write it next to a port)."""
    if host == "localhost":
        return True
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        return False
    return address.is_loopback and (address.version == 6) == bracketed
