"""A bad config file stops every command with exit 2, naming file, key and value, before anything changes."""

from __future__ import annotations

import pytest

from tests.integration.harness import Deployment, site

GOOD = [site("blog", "dialup-test-static:latest")]

# (what is wrong, sites, text appended to the file, key named, value named)
CASES = [
    ("syntax", GOOD, "[[sites]\nname = 'x'\n", "(syntax)", "line"),
    ("unknown key", [{**GOOD[0], "colour": "blue"}], "", "sites[0].colour", "'blue'"),
    ("bad port", [{**GOOD[0], "port": "http"}], "", "sites[0].port", "'http'"),
    ("port out of range", [{**GOOD[0], "port": 70000}], "", "sites[0].port", "70000"),
    ("bad kind", [{**GOOD[0], "kind": "php"}], "", "sites[0].kind", "'php'"),
    ("bad strategy", [{**GOOD[0], "strategy": "sometimes"}], "", "sites[0].strategy", "'sometimes'"),
    ("bad duration", [{**GOOD[0], "start_timeout": "soon"}], "", "sites[0].start_timeout", "'soon'"),
    ("bad name", [{**GOOD[0], "name": "My Blog"}], "", "sites[0].name", "'My Blog'"),
    ("missing image", [{k: v for k, v in GOOD[0].items() if k != "image"}], "", "sites[0].image", "(missing)"),
    ("duplicate name", [GOOD[0], {**GOOD[0], "hosts": ["other.test"]}], "", "sites[1].name", "'blog'"),
    ("duplicate host", [GOOD[0], {**GOOD[0], "name": "copy"}], "", "sites[1].hosts", "'blog.test'"),
    ("bad host", [{**GOOD[0], "hosts": ["http://blog.test"]}], "", "sites[0].hosts", "'http://blog.test'"),
    ("unknown table", GOOD, "[extra]\nx = 1\n", "extra", "{'x': 1}"),
    ("bad listen", GOOD, "", "server.listen", "'nowhere'"),
    ("admin on the network", GOOD, "", "caddy.admin", "'0.0.0.0:2019'"),
    ("unsafe capability", [{**GOOD[0], "cap_add": ["SYS_ADMIN"]}], "", "sites[0].cap_add", "SYS_ADMIN"),
    ("bad body limit", [{**GOOD[0], "max_body": "lots"}], "", "sites[0].max_body", "'lots'"),
]


@pytest.mark.parametrize(("sites", "extra", "key", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_exits_2_naming_file_key_and_value_and_changes_nothing(docker_client, sites, extra, key, value):
    d = Deployment(docker_client, sites)
    try:
        text = d.config_path.read_text()
        if key == "server.listen":
            text = text.replace(f'listen = "127.0.0.1:{d.listen_port}"', 'listen = "nowhere"')
        if key == "caddy.admin":  # Caddy's admin API can reconfigure it: only a unix socket or loopback
            text = text.replace(f'admin = "unix/{d.caddy_socket}"', 'admin = "0.0.0.0:2019"')
        d.config_path.write_text(text + extra)
        for command in ("check", "caddy-config", "status", "up"):
            result = d.command(command)
            assert result.returncode == 2, (command, result.stdout, result.stderr)
            message = result.stderr.strip()
            assert message.count("\n") == 0, message
            assert str(d.config_path) in message and key in message and value in message, message
        # Nothing was created, started or written.
        assert docker_client.containers.list(all=True, filters={"label": f"dialup.deployment={d.name}"}) == []
        assert docker_client.networks.list(filters={"label": f"dialup.deployment={d.name}"}) == []
        assert not (d.dir / "state").exists()
        assert not d.caddy_socket.exists()
    finally:
        d.close()


def test_a_good_config_checks_ok(docker_client):
    d = Deployment(docker_client, GOOD)
    try:
        result = d.command("check")
        assert result.returncode == 0, result.stderr
        assert "1 sites" in result.stdout
    finally:
        d.close()
