"""Threshold crossings from scripted readings: one per change of level, never one per tick."""

from __future__ import annotations

from activator.core.thresholds import Level, Limit, ThresholdWatch

LIMITS = {"memory": Limit(75, 90), "cpu": Limit(80)}


def test_one_crossing_per_change_of_level() -> None:
    watch = ThresholdWatch()
    script = [
        ({"memory": 50, "cpu": 10}, []),
        ({"memory": 76, "cpu": 10}, [("memory", Level.OK, Level.WARNING)]),
        ({"memory": 80, "cpu": 10}, []),  # still warning: nothing new
        ({"memory": 95, "cpu": 85}, [("memory", Level.WARNING, Level.CRITICAL), ("cpu", Level.OK, Level.WARNING)]),
        ({"memory": 96, "cpu": 99}, []),
        ({"memory": 60, "cpu": 99}, [("memory", Level.CRITICAL, Level.OK)]),
        ({"memory": 60, "cpu": 20}, [("cpu", Level.WARNING, Level.OK)]),
    ]
    for readings, expected in script:
        got = [(c.metric, c.before, c.after) for c in watch.observe(readings, LIMITS)]
        assert got == expected, readings


def test_descriptions_name_the_metric_value_and_bound() -> None:
    watch = ThresholdWatch()
    (up,) = watch.observe({"memory": 91.24}, LIMITS)
    assert up.describe() == "memory 91.2 above 90 (critical)"
    (down,) = watch.observe({"memory": 70}, LIMITS)
    assert down.describe() == "memory 70.0 back below 90 (ok)"


def test_sustained_counts_ticks_in_a_row_at_warning_or_above() -> None:
    watch = ThresholdWatch()
    for value, sustained in [(85, False), (90, False), (99, True), (50, False), (85, False)]:
        watch.observe({"cpu": value}, LIMITS)
        assert watch.sustained("cpu", 3) is sustained, value


def test_a_metric_no_longer_read_is_forgotten() -> None:
    watch = ThresholdWatch()
    watch.observe({"container:blog": 95.0}, {"container:blog": Limit(90)})
    watch.observe({}, {})
    assert watch.level("container:blog") is Level.OK and not watch.sustained("container:blog", 1)
