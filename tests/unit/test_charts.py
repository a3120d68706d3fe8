"""The panel's server-side charts: a gap where there is no figure, the maximum on the label, no inline style."""

from __future__ import annotations

from activator.admin.charts import bar, line_chart, series


def test_a_series_has_a_gap_where_no_point_is_and_the_chart_breaks_there() -> None:
    laid = series([(0, 1.0), (60, 3.0), (180, 2.0)], 0, 240, 60)
    assert laid == [(0.0, 1.0), (60.0, 3.0), (120.0, None), (180.0, 2.0)]
    svg = line_chart("requests", laid, "/min", 0, 240)
    assert svg.count("<polyline") == 2 and "requests (max 3 /min)" in svg


def test_a_bar_shows_its_share_and_its_threshold_without_inline_style() -> None:
    svg = bar(75, 100, "memory 75 % <of> 100", mark=80)
    assert 'width="300.0"' in svg and 'x1="320.0"' in svg and "style=" not in svg
    assert "&lt;of&gt;" in svg  # labels are escaped
