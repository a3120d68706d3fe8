"""The rendered Caddy config: one exact route per site, the activator as fallback, a 404 for the rest."""

from __future__ import annotations

from pathlib import Path

from activator.config import load_config
from activator.core.probe import is_ready_status, probe_delays
from activator.proxy.caddy import proxy_id, render

CONFIG = """
[server]
listen = "127.0.0.1:9000"
[caddy]
http_listen = "127.0.0.1:8080"
admin = "unix//tmp/x/caddy.sock"
[[sites]]
name = "blog"
hosts = ["blog.test", "www.blog.test"]
image = "blog"
port = 8080
[[sites]]
name = "app"
hosts = ["app.test"]
image = "app"
port = 3000
"""


def test_routes_point_at_the_container_only_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    rendered = render(load_config(path), {"app": 32768})
    server = rendered["apps"]["http"]["servers"]["dialup"]
    assert server["listen"] == ["127.0.0.1:8080"]
    assert server["automatic_https"] == {"disable": True}
    blog, app, fallback = server["routes"]
    assert blog["match"] == [{"host": ["blog.test", "www.blog.test"]}]
    assert blog["handle"][0]["@id"] == proxy_id("blog")
    assert blog["handle"][0]["upstreams"] == [{"dial": "127.0.0.1:9000"}]
    # Running: the container first; a refused dial falls through to the activator with the body kept.
    handler = app["handle"][0]
    assert handler["upstreams"] == [{"dial": "127.0.0.1:32768"}, {"dial": "127.0.0.1:9000"}]
    assert handler["load_balancing"]["selection_policy"] == {"policy": "first"}
    assert handler["buffer_requests"] is True
    assert "flush_interval" not in handler
    assert fallback == {"handle": [{"handler": "static_response", "status_code": 404, "body": "unknown host\n"}]}
    assert rendered["admin"]["listen"] == "unix//tmp/x/caddy.sock"
    assert rendered["admin"]["origins"] == ["localhost"]


def test_probe_delays_start_small_and_cap_at_50ms() -> None:
    delays = probe_delays()
    first = [next(delays) for _ in range(20)]
    assert first[0] == 0.002
    assert first == sorted(first)
    assert max(first) == 0.05 and first[-1] == 0.05


def test_ready_status() -> None:
    assert is_ready_status(200) and is_ready_status(404) and not is_ready_status(502)
