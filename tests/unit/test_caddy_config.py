"""The rendered Caddy config: one exact route per site, the activator as fallback, a 404 for the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from activator.config import CaddyConfig, load_config
from activator.core.probe import is_ready_status, probe_delays
from activator.proxy.render import REQUEST_BUFFER, admin_config, default_logger, proxy_id, render

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


def _render(tmp_path: Path, extra: str = "") -> dict[str, Any]:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace("[caddy]\n", "[caddy]\n" + extra))
    return render(load_config(path))


def _proxy(route: dict[str, Any]) -> dict[str, Any]:
    (proxy,) = [h for h in route["handle"] if h["handler"] == "reverse_proxy"]
    return proxy


def test_each_route_reads_its_file_first_then_falls_back_to_the_activator(tmp_path: Path) -> None:
    rendered = _render(tmp_path)
    server = rendered["apps"]["http"]["servers"]["dialup"]
    assert server["listen"] == ["fd/100"]  # the socket dialup made for the Caddy it runs
    assert server["automatic_https"] == {"disable": True}
    blog, app, fallback, _named = server["routes"]  # _named: for Caddy's metrics only (test_caddy_metrics.py)
    assert blog["match"] == [{"host": ["blog.test", "www.blog.test"]}]
    assert _proxy(blog)["@id"] == proxy_id("blog")
    # The route file says where (container or activator); a refused dial falls through to the activator.
    assert _proxy(blog)["upstreams"] == [{"dial": "{file./var/lib/dialup/routes/blog}"}, {"dial": "127.0.0.1:9000"}]
    assert _proxy(app)["upstreams"][0] == {"dial": "{file./var/lib/dialup/routes/app}"}
    assert _proxy(app)["load_balancing"]["selection_policy"] == {"policy": "first"}
    assert "flush_interval" not in _proxy(app)
    assert fallback == {"handle": [{"handler": "static_response", "status_code": 404, "body": "unknown host\n"}]}
    assert rendered["admin"]["listen"] == "unix//tmp/x/caddy.sock"
    assert rendered["admin"]["origins"] == ["localhost"]


def test_a_caddy_dialup_does_not_run_listens_where_it_is_told(tmp_path: Path) -> None:
    server = _render(tmp_path, "manage = false\n")["apps"]["http"]["servers"]["dialup"]
    assert server["listen"] == ["127.0.0.1:8080"]


def test_route_switches_keep_streams_buffers_are_bounded_and_the_activator_is_tried_again(tmp_path: Path) -> None:
    handler = _proxy(_render(tmp_path)["apps"]["http"]["servers"]["dialup"]["routes"][1])
    assert handler["stream_close_delay"] == "86400s"  # a reload does not close WebSockets
    assert handler["request_buffers"] == REQUEST_BUFFER <= 64 * 1024  # bounded: larger bodies stream
    assert "buffer_requests" not in handler  # Caddy 2.6's unbounded buffering is gone
    # An activator that is restarting is tried again (for seconds), and passed over only for a moment.
    assert handler["load_balancing"]["try_duration"] == "15s"
    assert handler["health_checks"]["passive"] == {"fail_duration": "100ms", "max_fails": 1}


def test_sites_get_a_body_limit_and_compression_and_the_server_limits(tmp_path: Path) -> None:
    server = _render(tmp_path)["apps"]["http"]["servers"]["dialup"]
    blog = server["routes"][0]
    assert [h["handler"] for h in blog["handle"]] == ["request_body", "encode", "reverse_proxy"]
    assert blog["handle"][0]["max_size"] == 100 * 1024 * 1024
    assert set(blog["handle"][1]["encodings"]) == {"zstd", "gzip"}
    assert server["max_header_bytes"] == 16 * 1024
    assert server["read_header_timeout"] == "10s" and server["idle_timeout"] == "120s"


def test_a_site_can_opt_out_of_compression_and_body_limits_and_streams_can_close(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    text = CONFIG.replace("[caddy]\n", '[caddy]\nstream_close_delay = "off"\n')
    path.write_text(text.replace('image = "app"', 'image = "app"\ncompress = false\nmax_body = "off"'))
    app = render(load_config(path))["apps"]["http"]["servers"]["dialup"]["routes"][1]
    assert [h["handler"] for h in app["handle"]] == ["reverse_proxy"]
    assert "stream_close_delay" not in _proxy(app)


def test_probe_delays_start_small_and_cap_at_50ms() -> None:
    delays = probe_delays()
    first = [next(delays) for _ in range(20)]
    assert first[0] == 0.002
    assert first == sorted(first)
    assert max(first) == 0.05 and first[-1] == 0.05


def test_ready_status() -> None:
    assert is_ready_status(200) and is_ready_status(404) and not is_ready_status(502)


def test_the_base_config_in_caddy_is_what_dialup_starts_caddy_with(tmp_path: Path) -> None:
    base = json.loads((Path(__file__).resolve().parents[2] / "caddy" / "base.json").read_text())
    # ... and its default logger leaves out dialup's access lines (activity = "log"), as a managed Caddy's does.
    assert base == {"admin": admin_config(CaddyConfig()), "logging": {"logs": {"default": default_logger()}}}


def test_a_scalable_site_routes_to_its_two_instances_by_least_conn_and_its_second_has_no_route(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace('image = "app"\n', 'image = "app"\nstrategy = "scalable"\n'))
    config = load_config(path)
    assert [s.name for s in config.sites] == ["blog", "app", "app.2"]
    routes = render(config)["apps"]["http"]["servers"]["dialup"]["routes"]
    ids = [r.get("@id") for r in routes]
    assert "dialup-site-app" in ids and "dialup-site-app.2" not in ids
    app = _proxy(next(r for r in routes if r.get("@id") == "dialup-site-app"))
    routes_dir = config.server.routes_dir
    # No activator upstream: least_conn would give it a share; a file says the activator when need be.
    assert app["upstreams"] == [{"dial": f"{{file.{routes_dir}/app}}"}, {"dial": f"{{file.{routes_dir}/app.2}}"}]
    assert app["load_balancing"]["selection_policy"] == {"policy": "least_conn"}
    blog = _proxy(next(r for r in routes if r.get("@id") == "dialup-site-blog"))
    assert blog["load_balancing"]["selection_policy"] == {"policy": "first"}
    assert blog["upstreams"][-1] == {"dial": "127.0.0.1:9000"}
