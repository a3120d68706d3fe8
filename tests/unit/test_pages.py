"""The panel's pages from known figures: every site in the table with sortable values, the budget and host bars,
alerts with their acknowledgement, the timeline; a site's charts for each window."""

from __future__ import annotations

from activator.admin.pages import figures_of, overview, site_page
from activator.core.history import HOUR, MINUTE, Point

MiB = 1 << 20
NOW = 1_800_000_000 - 1_800_000_000 % HOUR + 1800


def minute(start: int, n: int, ms_bucket: int = 2, cold: int = 0) -> Point:
    latency = tuple(n if i == ms_bucket else 0 for i in range(12))
    return Point("blog", start, MINUTE, requests=n, errors=n // 10, latency=latency, memory_peak=20 * MiB,
                 up_seconds=60.0, cold_starts=cold)  # fmt: skip


def test_figures_of_a_sites_last_hour_its_month_and_its_day() -> None:
    hour = [minute(int(NOW) - 60 * (i + 1) - int(NOW) % 60, 30) for i in range(60)]
    month = Point("blog", 0, 0, up_seconds=990.0, down_seconds=10.0)
    f = figures_of(hour, month, Point("blog", 0, 0, cold_starts=2), 1.25)
    assert f.requests_per_minute == 30.0 and f.errors == 3 * 60 and f.p95_ms == 25.0
    assert f.uptime == 0.99 and f.cold_starts_today == 2 and f.cost == 1.25
    assert figures_of([], None, None, None).uptime is None


STATUS = {
    "budget": {"used": 128 * MiB, "total": 2150 * MiB, "holders": 0},
    "host": {"cpu": {"value": 85.0, "warning": 80.0, "level": "warning"}, "memory": {"value": None, "warning": 75}},
    "sites": [
        {"name": "blog", "state": "running", "memory_used": 20 * MiB, "memory_limit": 64 * MiB},
        {"name": "shop<x>", "state": "stopped", "memory_used": None, "memory_limit": 256 * MiB},
    ],
}


def test_the_overview_lists_every_site_with_sort_keys_alerts_and_the_timeline() -> None:
    f = figures_of([minute(int(NOW) - 120, 12)], None, None, 0.8)
    html = overview(
        STATUS,
        {"blog": f},
        [{"when": "12:00", "site": "blog", "kind": "start", "detail": "312 ms"}],
        [{"id": 7, "site": "(host)", "kind": "threshold", "detail": "cpu 85.0 above 80"}],
        "$",
    )
    assert html.count("<tr>") == 3 and 'href="/panel/sites/blog"' in html and "shop&lt;x&gt;" in html
    assert 'data-sort="0.2"' in html and "$0.80" in html and "20 / 64 MiB" in html
    assert 'action="/panel/alerts/7/ack"' in html and "cpu 85.0 (warning 80)" in html
    assert "budget: 128 of 2150 MiB" in html and "312 ms" in html
    assert "<script>" not in html and "style=" not in html  # the CSP allows neither


def test_a_sites_page_has_charts_for_the_hour_the_day_and_the_week() -> None:
    points = [minute(int(NOW) - 60 * (i + 1) - int(NOW) % 60, 5) for i in range(30)]
    points.append(Point("blog", int(NOW) - 3 * 86400 - int(NOW) % HOUR, HOUR, requests=300, memory_peak=30 * MiB))
    html = site_page("blog", points, NOW)
    for window in ("hour", "day", "week"):
        assert f"Last {window}" in html and f"requests, last {window}" in html
    assert html.count('<svg class="chart"') == 12
