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
    (down,) = watch.observe({"memory": 60}, LIMITS)
    assert down.describe() == "memory 60.0 back below 81, 90 less its margin (ok)"


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


def test_a_level_clears_only_its_margin_below_where_it_was_raised() -> None:
    watch = ThresholdWatch()
    # The CPU wavering around its 80 % warning under load: raised once, not cleared until under 72 %.
    readings = [79, 81, 79, 82, 78, 80, 76, 73, 79, 81, 71.9, 75, 79, 80]
    changes = [(c.before, c.after) for r in readings for c in watch.observe({"cpu": r}, LIMITS)]
    assert changes == [(Level.OK, Level.WARNING), (Level.WARNING, Level.OK), (Level.OK, Level.WARNING)]
    # Critical clears 10 % below its own bound, to warning, then to ok 10 % below the warning's.
    watch = ThresholdWatch()
    levels = []
    for reading in (91, 85, 80, 70, 67):
        watch.observe({"memory": reading}, LIMITS)
        levels.append(watch.level("memory"))
    assert levels == [Level.CRITICAL, Level.CRITICAL, Level.WARNING, Level.WARNING, Level.OK]
