"""Activity from Caddy's metrics: the parser (on text captured from Caddy 2.11.7 by caddy_metrics/capture.py), the
counters' rises (reloads, restarts, new hosts), the sites they belong to (ports, wildcards, "_other"), the config
rendered for it, the poller, and the reaper that reads it every tick."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from activator.config import Config, load_config
from activator.core.counters import OTHER, CounterDeltas, attribute
from activator.core.hosts import HostTable
from activator.model import ActivitySource, SiteState
from activator.proxy.caddy import CaddyError
from activator.proxy.metrics import CaddyMetrics, parse
from activator.proxy.render import METRICS_HOSTS_ROUTE, render, site_handlers
from activator.reaper import Reaper
from activator.testing.clock import settle
from activator.testing.rig import site_config
from tests.unit.conftest import MakeRig
from tests.unit.supervisor_kit import running

CAPTURED = Path(__file__).resolve().parent / "caddy_metrics"
RB = "request_body"  # the first handler of every site's route by default (max_body is set)


def captured(name: str) -> bytes:
    return (CAPTURED / name).read_bytes()


def _port(scrape_hosts: list[str]) -> str:
    (host,) = [h for h in scrape_hosts if h.startswith("blog.test:")]
    return host.partition(":")[2]


# -- the parser ------------------------------------------------------------------------------------------------------


def test_parse_reads_the_request_counters_of_dialups_server_and_the_last_reload() -> None:
    scrape = parse(captured("1-first.txt"))
    port = _port([host for host, _ in scrape.requests])
    # blog.test x3, www.blog.test, BLOG.test:PORT and blog.test:PORT (lowercased by Caddy), a. and b.wild.test and
    # nope.test (not named in the config: "_other", the wildcard site's by its route's handler, the 404's not).
    assert scrape.requests == {
        ("blog.test", RB): 3.0,
        ("www.blog.test", RB): 1.0,
        (f"blog.test:{port}", RB): 2.0,
        (OTHER, RB): 2.0,
        (OTHER, "static_response"): 1.0,
    }
    assert scrape.reloaded is not None and 1.7e9 < scrape.reloaded < 2.1e9
    assert not scrape.unlabelled


def test_parse_after_a_reload_finds_no_counters_until_requests_come() -> None:
    before, after = parse(captured("2-more.txt")), parse(captured("3-reloaded.txt"))
    assert after.requests == {} and after.reloaded is not None and before.reloaded is not None
    assert after.reloaded > before.reloaded
    assert parse(captured("4-after.txt")).requests == {("www.blog.test", RB): 2.0}


def test_parse_takes_only_the_named_server_and_copes_with_any_label_text() -> None:
    text = b"\n".join(
        [
            b"# HELP caddy_http_requests_total Counter of HTTP(S) requests made.",
            b"# TYPE caddy_http_requests_total counter",
            b'caddy_http_requests_total{handler="reverse_proxy",host="a.test",server="dialup"} 1.5e+06',
            b'caddy_http_requests_total{handler="reverse_proxy",host="a.test",server="other"} 7',
            b'caddy_http_requests_total{server="dialup",host="we\\"ird}\\\\x",handler="encode"} 2 1700000000000',
            b'caddy_http_requests_total_other{handler="x",host="a.test",server="dialup"} 9',
            b'promhttp_metric_handler_requests_total{code="200"} 3',
            b'caddy_http_requests_total{handler="reverse_proxy",host="b.test",server="dialup"} NaN-ish',
            b"caddy_config_last_reload_success_timestamp_seconds 1.7e+09",
        ]
    )
    scrape = parse(text)
    assert scrape.requests == {("a.test", "reverse_proxy"): 1_500_000.0, ('we"ird}\\x', "encode"): 2.0}
    assert scrape.reloaded == 1.7e9


def test_parse_finds_the_counter_first_in_the_text_and_in_runs_apart() -> None:
    sample = b'caddy_http_requests_total{handler="h",host="%s",server="dialup"} 1\n'
    text = sample % b"a" + b"# HELP x\nx 1\n" + sample % b"b" + sample % b"c" + b"# HELP y\ny 2"
    assert set(parse(text).requests) == {("a", "h"), ("b", "h"), ("c", "h")}
    assert parse(b"caddy_config_last_reload_success_timestamp_seconds 5\n").reloaded == 5.0


def test_parse_says_when_caddy_counts_without_a_host_label() -> None:
    scrape = parse(b'caddy_http_requests_total{handler="reverse_proxy",server="dialup"} 4\n')
    assert scrape.unlabelled and scrape.requests == {("", "reverse_proxy"): 4.0}
    assert parse(b"").requests == {} and parse(b"").reloaded is None


# -- the counters' rises ------------------------------------------------------------------------------------------


def test_the_first_read_is_a_baseline_then_only_rises_count() -> None:
    d = CounterDeltas()
    assert d.update(10.0, {("a", RB): 5.0}) == {}  # held before we looked: when, unknown
    assert d.update(10.0, {("a", RB): 5.0}) == {}
    assert d.update(10.0, {("a", RB): 8.0, ("b", RB): 2.0}) == {("a", RB): 3, ("b", RB): 2}  # b: a new host


def test_a_first_read_after_a_reload_since_counting_began_counts_everything() -> None:
    assert CounterDeltas(since=100.0).update(101.0, {("a", RB): 4.0}) == {("a", RB): 4}
    assert CounterDeltas(since=100.0).update(99.0, {("a", RB): 4.0}) == {}
    assert CounterDeltas(since=100.0).update(None, {("a", RB): 4.0}) == {}


def test_a_reload_starts_the_counters_from_zero_whatever_they_show() -> None:
    d = CounterDeltas()
    d.update(10.0, {("a", RB): 5.0, ("b", RB): 9.0})
    # New epoch: a at 7 is 7 requests since the reload (not 2); b gone (no request since); c new.
    assert d.update(20.0, {("a", RB): 7.0, ("c", RB): 1.0}) == {("a", RB): 7, ("c", RB): 1}
    assert d.update(20.0, {("a", RB): 7.0, ("b", RB): 1.0, ("c", RB): 1.0}) == {("b", RB): 1}


def test_a_counter_that_goes_back_counted_again_from_zero() -> None:
    d = CounterDeltas()  # a Caddy that does not say when it reloaded (epoch None throughout)
    d.update(None, {("a", RB): 50.0})
    assert d.update(None, {("a", RB): 3.0}) == {("a", RB): 3}  # restarted, then 3 requests
    assert d.update(None, {("a", RB): 3.0}) == {}


def test_the_captured_sequence_through_rises_and_sites() -> None:
    table = HostTable([("blog.test", "blog"), ("www.blog.test", "blog"), ("*.wild.test", "wild")])

    def sites(deltas: dict[Any, int]) -> dict[str, int]:
        return attribute(deltas, table.site, {RB}, ["wild"]).per_site

    files = [parse(captured(n)) for n in ("1-first.txt", "2-more.txt", "3-reloaded.txt", "4-after.txt")]
    d = CounterDeltas()
    assert [sites(d.update(f.reloaded, f.requests)) for f in files] == [
        {},  # the baseline
        {"blog": 1, "wild": 1},  # blog.test, x.wild.test
        {},  # a route switch: everything back to zero, nothing new
        {"blog": 2},  # www.blog.test x2
    ]
    first = files[0]
    assert first.reloaded is not None
    fresh = CounterDeltas(since=first.reloaded - 1)  # this activator's start came before Caddy's reload
    assert sites(fresh.update(first.reloaded, first.requests)) == {"blog": 6, "wild": 2}  # not nope.test's 404


# -- the sites the requests belong to -----------------------------------------------------------------------------


def test_hosts_are_found_as_the_supervisor_finds_them() -> None:
    table = HostTable([("blog.test", "blog"), ("*.wild.test", "wild")])
    deltas = {
        ("blog.test", RB): 1,
        ("blog.test:8080", RB): 2,  # named with the listen port (the metrics hosts route)
        ("a.wild.test", RB): 4,  # over HTTPS Caddy names every host: the wildcard finds it
        ("nope.test", "static_response"): 8,  # the same, for an unknown host's 404: nobody's
        ("a.b.wild.test", RB): 16,  # * is one label: nobody's
    }
    got = attribute(deltas, table.site, {RB}, ["wild"])
    assert got.per_site == {"blog": 3, "wild": 4} and got.unattributed == 0


def test_other_from_a_sites_route_goes_to_the_wildcard_sites() -> None:
    table = HostTable([("blog.test", "blog")])
    deltas = {(OTHER, RB): 3, (OTHER, "static_response"): 5, (OTHER, "encode"): 1}
    # One wildcard site: all of it. Several: each gets all of it (a busy one must not look idle).
    assert attribute(deltas, table.site, {RB, "encode"}, ["w"]).per_site == {"w": 4}
    assert attribute(deltas, table.site, {RB, "encode"}, ["w", "v"]).per_site == {"w": 4, "v": 4}
    # None: nobody's, and said so. The 404's (static_response) never counts.
    got = attribute(deltas, table.site, {RB, "encode"}, [])
    assert got.per_site == {} and got.unattributed == 4


# -- the config rendered for it -------------------------------------------------------------------------------------

CONFIG = """
[server]
listen = "127.0.0.1:9000"
{server}
[caddy]
http_listen = "{listen}"
admin = "unix//tmp/x/caddy.sock"
{caddy}
[[sites]]
name = "blog"
hosts = ["blog.test", "www.blog.test"]
image = "blog"
port = 8080
[[sites]]
name = "wild"
hosts = ["*.wild.test"]
image = "wild"
port = 8080
compress = false
max_body = "off"
"""


def _config(tmp_path: Path, listen: str = "127.0.0.1:8080", server: str = "", caddy: str = "") -> Config:
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.format(listen=listen, server=server, caddy=caddy))
    return load_config(path)


def test_metrics_are_the_default_source_per_host_and_with_no_access_log(tmp_path: Path) -> None:
    rendered = render(_config(tmp_path))
    assert rendered["apps"]["http"]["metrics"] == {"per_host": True}
    assert "logging" not in rendered and "logs" not in rendered["apps"]["http"]["servers"]["dialup"]
    named = rendered["apps"]["http"]["servers"]["dialup"]["routes"][-1]
    assert named == {
        "@id": METRICS_HOSTS_ROUTE,
        "match": [{"host": ["blog.test:8080", "www.blog.test:8080"]}],  # wildcards cannot be named
        "terminal": True,
    }


@pytest.mark.parametrize(("listen", "caddy"), [(":80", ""), ("127.0.0.1:443", ""), (":8443", "automatic_https = true")])
def test_no_metrics_hosts_route_where_hosts_carry_no_port_or_https_names_them_all(
    tmp_path: Path, listen: str, caddy: str
) -> None:
    routes = render(_config(tmp_path, listen, caddy=caddy))["apps"]["http"]["servers"]["dialup"]["routes"]
    assert METRICS_HOSTS_ROUTE not in [r.get("@id") for r in routes]


def test_the_log_source_renders_the_access_log_and_no_metrics(tmp_path: Path) -> None:
    rendered = render(_config(tmp_path, server='activity = "log"'))
    server = rendered["apps"]["http"]["servers"]["dialup"]
    assert "metrics" not in rendered["apps"]["http"] and server["logs"] == {"default_logger_name": "dialup"}
    assert rendered["logging"]["logs"]["dialup"]["writer"]["output"] == "net"
    assert METRICS_HOSTS_ROUTE not in [r.get("@id") for r in server["routes"]]


@pytest.mark.parametrize(
    ("server", "caddy", "source"),
    [
        ("", "", ActivitySource.METRICS),
        ("", "automatic_https = true", ActivitySource.LOG),  # HTTPS: every Host sent would get a series
        ('activity = "metrics"', "automatic_https = true", ActivitySource.METRICS),  # asked for: allowed
        ('activity = "log"', "", ActivitySource.LOG),
    ],
)
def test_activity_defaults_to_the_log_with_automatic_https(
    tmp_path: Path, server: str, caddy: str, source: ActivitySource, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(tmp_path, server=server, caddy=caddy)
    assert config.server.activity is source
    assert ("metrics" in render(config)["apps"]["http"]) is (source is ActivitySource.METRICS)
    if source is ActivitySource.METRICS:  # chosen over HTTPS anyway: said once, when the poller is made
        CaddyMetrics(FakeAdmin(), config, lambda host: None, lambda site, n: None)  # type: ignore[arg-type]
        warned = [r for r in caplog.records if "every Host header sent over HTTPS" in r.getMessage()]
        assert len(warned) == (1 if config.caddy.automatic_https else 0)


def test_a_bad_activity_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"server.activity.*'stream'.*metrics \| log"):
        _config(tmp_path, server='activity = "stream"')


def test_site_handlers_are_the_first_handler_of_each_sites_route(tmp_path: Path) -> None:
    assert site_handlers(_config(tmp_path)) == {"request_body", "reverse_proxy"}  # wild: no body limit, no encode


# -- the poller -------------------------------------------------------------------------------------------------


class FakeAdmin:
    def __init__(self, *bodies: bytes | Exception) -> None:
        self.bodies = list(bodies)

    async def read(self, path: str) -> bytes:
        assert path == "/metrics"
        body = self.bodies.pop(0)
        if isinstance(body, Exception):
            raise body
        return body


async def test_the_poller_records_each_sites_requests_and_says_when_it_cannot_read(tmp_path: Path) -> None:
    config = _config(tmp_path)
    table = HostTable((h, s.name) for s in config.sites for h in s.hosts)
    recorded: list[tuple[str, int]] = []
    admin = FakeAdmin(
        captured("1-first.txt"), captured("2-more.txt"), CaddyError("GET /metrics: 503"), captured("4-after.txt")
    )
    poller = CaddyMetrics(admin, config, table.site, lambda site, n: recorded.append((site, n)))  # type: ignore[arg-type]
    assert await poller.poll() and recorded == []  # the captured reload is older than this poller: a baseline
    assert await poller.poll() and sorted(recorded) == [("blog", 1), ("wild", 1)]
    assert not await poller.poll()  # nothing decided on figures that could not be read
    assert await poller.poll() and recorded[-1] == ("blog", 2)  # a reload came between: counted from zero
    assert poller.reads == 3 and poller.bytes == len(captured("4-after.txt"))


class SlowAdmin:
    """Each read waits for a go of its own; counts how many reads are under way at once."""

    def __init__(self, body: bytes) -> None:
        self.body, self.now, self.most = body, 0, 0
        self.go: asyncio.Queue[None] = asyncio.Queue()

    async def read(self, path: str) -> bytes:
        self.now += 1
        self.most = max(self.most, self.now)
        await self.go.get()
        self.now -= 1
        return self.body


async def test_reads_never_overlap_however_many_callers(tmp_path: Path) -> None:
    """Counters are compared in the order they were read: two reads at once could count a request twice."""
    config = _config(tmp_path)
    admin = SlowAdmin(captured("1-first.txt"))
    poller = CaddyMetrics(admin, config, lambda host: None, lambda site, n: None)  # type: ignore[arg-type]
    first = [asyncio.ensure_future(poller.poll()) for _ in range(2)]
    await settle()
    admin.go.put_nowait(None)  # the first read ends and the second begins ...
    await settle()
    late = asyncio.ensure_future(poller.poll())  # ... and a third caller comes while it is under way
    await settle()
    for _ in range(2):
        admin.go.put_nowait(None)
    assert all(await asyncio.gather(*first, late))
    assert admin.most == 1 and poller.reads == 3


# -- the reaper reads before it decides ------------------------------------------------------------------------


async def test_the_reaper_reads_activity_first_and_takes_nothing_down_when_it_cannot(rig: MakeRig) -> None:
    r = await rig(site_config("a", idle_timeout=30.0))
    await running(r, "a")
    reads: list[int | None] = []  # what each read finds: requests for "a", or None when it fails

    async def poll() -> bool:
        found = reads.pop(0)
        if found:
            r.sup.on_requests("a", found)
        return found is not None

    reaper = Reaper(r.sup, interval=1.0, poll=poll)
    for _ in range(3):
        await r.clock.advance(29.0)
        reads.append(2)
        await reaper.tick()  # each read finds requests: never idle for 30 s
        await settle()
    assert r["a"].state is SiteState.RUNNING
    assert r.sup.activity.per_minute("a") == 6.0  # three reads of 2, within the last minute

    await r.clock.advance(31.0)
    reads.append(None)
    await reaper.tick()  # idle by what was last known, but this tick's read failed: left alone
    await settle()
    assert r["a"].state is SiteState.RUNNING
    reads.append(0)
    await reaper.tick()  # read, and nothing new: idle
    await r.until("a", SiteState.STOPPED)
