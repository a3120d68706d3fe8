"""TOML written from what tomllib read (the standard library reads TOML and writes none): a restored config, and
the test harness's configs."""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # TOML's bare keys: ASCII only


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string (its escapes are TOML's)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(i) for i in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(i)}" for k, i in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else toml_value(k)


def _is_tables(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)


def dumps(data: dict[str, Any]) -> str:
    """Top-level keys, then each table, then each array of tables; tables within tables written inline."""
    lines = [
        f"{toml_key(k)} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict) and not _is_tables(v)
    ]
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", f"[{toml_key(k)}]"] + [f"{toml_key(a)} = {toml_value(b)}" for a, b in v.items()]
    for k, v in data.items():
        if _is_tables(v):
            for item in v:
                lines += ["", f"[[{toml_key(k)}]]"] + [f"{toml_key(a)} = {toml_value(b)}" for a, b in item.items()]
    return "\n".join(lines).lstrip("\n") + "\n"
