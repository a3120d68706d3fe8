"""Who may edit which site: per-site login tokens and the sessions they open, with only hashes stored.

`dialup editor-token SITE` makes a token (shown once, in a login link); a login with it opens a session for
that site alone, carried by an HttpOnly, Secure, SameSite=Strict cookie. Tokens and sessions are stored as
SHA-256 hashes: a copy of the database opens nothing. A WebSocket upgrade must come from the editor's own
origin. Every refusal looks the same from outside (401, nothing said about why).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS editor_access (
    hash     TEXT PRIMARY KEY,   -- sha256 of the token or session id
    site     TEXT NOT NULL,
    kind     TEXT NOT NULL,      -- token | session
    expires  REAL NOT NULL       -- unix seconds
);
"""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    site: str
    expires: float


class Access:
    """Writer of the editor's tokens and sessions. `now` is an argument: decisions are tested on a fake clock."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def open(self) -> None:
        await self._db.executescript(SCHEMA)
        await self._db.commit()

    async def issue_token(self, site: str, now: float, ttl: float) -> str:
        return await self._issue(site, "token", now + ttl)

    async def login(self, site: str, token: str, now: float, session_ttl: float) -> str | None:
        """A token for this site, unexpired: it is used up, and a session id for the site is returned. Expired
        tokens and sessions are swept first (a login is rare enough to pay for it)."""
        await self.expire(now)
        grant = await self._find(token, "token", now)
        if grant is None or not hmac.compare_digest(grant.site, site):
            return None
        # Used up in one statement: of two logins with one token, one gets the session.
        cur = await self._db.execute("DELETE FROM editor_access WHERE hash = ? AND kind = 'token'", (_hash(token),))
        if cur.rowcount != 1:
            return None
        return await self._issue(site, "session", now + session_ttl)

    async def session(self, session_id: str, site: str, now: float) -> bool:
        """The cookie's session is open, and for this site (another site's session opens nothing here)."""
        grant = await self._find(session_id, "session", now)
        return grant is not None and hmac.compare_digest(grant.site, site)

    async def expire(self, now: float) -> int:
        cur = await self._db.execute("DELETE FROM editor_access WHERE expires <= ?", (now,))
        await self._db.commit()
        return cur.rowcount

    async def _issue(self, site: str, kind: str, expires: float) -> str:
        secret = secrets.token_urlsafe(32)
        await self._db.execute(
            "INSERT INTO editor_access (hash, site, kind, expires) VALUES (?, ?, ?, ?)",
            (_hash(secret), site, kind, expires),
        )
        await self._db.commit()
        return secret

    async def _find(self, secret: str, kind: str, now: float) -> Grant | None:
        if not secret or len(secret) > 256:
            return None
        query = "SELECT site, expires FROM editor_access WHERE hash = ? AND kind = ?"
        async with self._db.execute(query, (_hash(secret), kind)) as cur:
            row = await cur.fetchone()
        if row is None or row[1] <= now:
            return None
        return Grant(str(row[0]), float(row[1]))


def origin_allowed(origin: str | None, editor_host: str) -> bool:
    """A WebSocket upgrade (or a write) comes from the editor's own page: its Origin names the editor's host
    (a browser always sends it on an upgrade; a missing one is refused)."""
    if not origin:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("https", "http") and parts.netloc.lower() == editor_host.lower()
