"""The editor's tokens and sessions in real SQLite: only hashes stored, a token opens its own site once, a
session is for one site, expiry, and the Origin check of WebSocket upgrades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from activator.editor.access import Access, origin_allowed


@pytest.fixture
async def access(tmp_path: Path) -> AsyncIterator[Access]:
    async with aiosqlite.connect(tmp_path / "dialup.db") as db:
        made = Access(db)
        await made.open()
        yield made


async def test_a_token_opens_a_session_for_its_own_site_once(access: Access, tmp_path: Path) -> None:
    token = await access.issue_token("blog", now=1000.0, ttl=600.0)
    assert await access.login("shop", token, now=1001.0, session_ttl=3600.0) is None  # another site's token
    session = await access.login("blog", token, now=1001.0, session_ttl=3600.0)
    assert session is not None
    assert await access.login("blog", token, now=1002.0, session_ttl=3600.0) is None  # used up
    assert await access.session(session, "blog", now=1003.0)
    assert not await access.session(session, "shop", now=1003.0)  # nothing of another site
    assert not await access.session(session, "blog", now=1001.0 + 3600.0)  # expired
    assert not await access.session("", "blog", now=1003.0) and not await access.session("x" * 1000, "blog", 1003.0)
    raw = (tmp_path / "dialup.db").read_bytes()
    assert token.encode() not in raw and session.encode() not in raw  # only hashes are stored


async def test_two_logins_with_one_token_open_one_session(access: Access) -> None:
    import asyncio

    token = await access.issue_token("blog", now=1000.0, ttl=600.0)
    both = await asyncio.gather(*(access.login("blog", token, now=1001.0, session_ttl=60.0) for _ in range(2)))
    assert sum(s is not None for s in both) == 1


async def test_an_expired_token_opens_nothing_and_is_swept(access: Access) -> None:
    token = await access.issue_token("blog", now=1000.0, ttl=60.0)
    await access.issue_token("blog", now=1000.0, ttl=30.0)
    assert await access.login("blog", token, now=1060.0, session_ttl=3600.0) is None
    assert await access.expire(now=1061.0) == 0  # both swept by that login already
    assert await access._db.execute_fetchall("SELECT * FROM editor_access") == []


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://editor.example.com", True),
        ("https://EDITOR.example.com", True),
        ("https://evil.example.com", False),
        ("https://editor.example.com.evil.net", False),
        ("null", False),
        (None, False),
        ("", False),
        ("ftp://editor.example.com", False),
    ],
)
def test_websocket_upgrades_only_from_the_editors_own_origin(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, "editor.example.com") is allowed


SITE = '[[sites]]\nname = "blog"\nhosts = ["blog.test"]\nimage = "blog:1"\nport = 8080\n'


def test_the_editor_table(tmp_path: Path) -> None:
    from activator.config import ConfigError, load_config

    path = tmp_path / "dialup.toml"
    path.write_text('[editor]\nhost = "editor.example.com"\npreview_host = "{site}-dev.example.com"\n' + SITE)
    editor = load_config(path).editor
    assert editor.enabled and editor.preview_of("blog") == "blog-dev.example.com"
    assert not load_config(_write(tmp_path, SITE)).editor.enabled  # no host: no editor
    for table, key in (
        ('[editor]\nhost = "https://editor.example.com"\n', "editor.host"),
        ('[editor]\nhost = "editor.example.com"\npreview_host = "dev.example.com"\n', "editor.preview_host"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(_write(tmp_path, table + SITE))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.toml"
    path.write_text(text)
    return path


async def test_editor_token_prints_a_link_whose_token_logs_in_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import time

    from activator.cli import main

    config = _write(
        tmp_path,
        f'[server]\nstate_dir = "{tmp_path / "state"}"\n[caddy]\nhttp_listen = "127.0.0.1:8080"\n'
        '[editor]\nhost = "editor.localhost"\n' + SITE,
    )
    assert await asyncio.to_thread(main, ["editor-token", "blog", "-c", str(config)]) == 0
    link = capsys.readouterr().out.strip()
    assert link.startswith("http://editor.localhost:8080/sites/blog/login?token=")
    token = link.partition("token=")[2]
    async with aiosqlite.connect(tmp_path / "state" / "system" / "dialup.db") as db:
        access = Access(db)
        assert await access.login("blog", token, time.time(), 60.0) is not None
        assert await access.login("blog", token, time.time(), 60.0) is None
    assert await asyncio.to_thread(main, ["editor-token", "nope", "-c", str(config)]) == 2
    assert "no site 'nope'" in capsys.readouterr().err
