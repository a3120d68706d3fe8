"""The editor's sync protocol: one JSON message per WebSocket frame, each request answered by its id.

Requests: {"id": N, "op": "list"} | {"op": "open", "path"} | {"op": "write", "path", "content", "base"} |
{"op": "create", "path", "content"} | {"op": "rename", "path", "to"} | {"op": "delete", "path"}.
Answers: {"id": N, "ok": true, ...} or {"id": N, "ok": false, "error": "...", ...}; a write based on a stale
version answers {"ok": false, "conflict": true, "current": ..., "current_hash": ...}. A client that reconnects
resends the writes it has no answer for: a write whose content is already the file's is acknowledged again
(the first send was applied), never reported as a conflict. Content is text (UTF-8); binary files are listed
but not opened. The handler is the workspace's only writer on a user's behalf; it runs the file work in a
thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from activator.editor.workspace import Conflict, NotFound, PathRefused, Workspace, content_hash

MAX_MESSAGE = 6 << 20  # bytes of one message: a file's limit plus room for JSON escaping


class ProtocolError(Exception):
    """A message that is not a request of this protocol."""


class Session:
    """One editor tab's conversation with one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    async def handle(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or not isinstance(message.get("op"), str):
            raise ProtocolError("a request is a JSON object with an op")
        ident = message.get("id")
        try:
            result = await asyncio.to_thread(self._do, message)
        except Conflict as exc:
            return {
                "id": ident,
                "ok": False,
                "conflict": True,
                "path": exc.path,
                "current": _text(exc.current),
                "current_hash": exc.current_hash,
            }
        except (PathRefused, NotFound, ProtocolError, UnicodeDecodeError) as exc:
            kind = "not found" if isinstance(exc, NotFound) else "refused"
            return {"id": ident, "ok": False, "error": f"{kind}: {exc}"}
        except (OSError, RecursionError) as exc:  # what the file system says (a folder moved into itself, say)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            return {"id": ident, "ok": False, "error": f"refused: {why}"}
        return {"id": ident, "op": message["op"], "ok": True, **result}

    def _do(self, m: dict[str, Any]) -> dict[str, Any]:
        op = m["op"]
        if op == "list":
            return {"entries": [{"path": e.path, "kind": e.kind, "size": e.size} for e in self._ws.tree()]}
        path = _string(m, "path")
        if op == "open":
            data, version = self._ws.read(path)
            return {"path": path, "content": data.decode(), "hash": version}
        if op in ("write", "create"):
            data = _string(m, "content").encode()
            base = None if op == "create" else _string(m, "base")
            try:
                return {"path": path, "hash": self._ws.write(path, data, base)}
            except Conflict as exc:
                if exc.current == data:  # a resent write that was applied the first time
                    return {"path": path, "hash": content_hash(data)}
                raise
        if op == "rename":
            self._ws.rename(path, _string(m, "to"))
            return {"path": path, "to": m["to"]}
        if op == "delete":
            self._ws.delete(path)
            return {"path": path}
        raise ProtocolError(f"unknown op {op!r}")


def _string(m: dict[str, Any], key: str) -> str:
    value = m.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string")
    return value


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")
