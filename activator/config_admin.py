"""The [cost] and [history] tables: what the server costs (split across the sites by what they reserve and use),
and how long the per-site history is kept."""

from __future__ import annotations

from dataclasses import dataclass

from activator.config_values import _at_least, _non_negative, _number, _Table, _typed, parse_duration

DAY = 86400.0


@dataclass(frozen=True)
class CostConfig:
    monthly: float = 0.0  # the server's price a month; 0: no money figures, only shares
    currency: str = "$"


@dataclass(frozen=True)
class HistoryConfig:
    minutes: float = DAY  # minute points kept this long, then rolled up into hours
    hours: float = 90 * DAY  # hour points kept this long


def _currency(value: object) -> str:
    text = _typed(str, "a short currency sign or code, like '$' or 'EUR'")(value)
    if not 0 < len(text) <= 4:
        raise ValueError("expected a short currency sign or code, like '$' or 'EUR'")
    return text


def read_cost(t: _Table) -> CostConfig:
    d = CostConfig()
    cost = CostConfig(
        monthly=t.get("monthly", _non_negative(_number), d.monthly),
        currency=t.get("currency", _currency, d.currency),
    )
    t.done()
    return cost


def read_history(t: _Table) -> HistoryConfig:
    d = HistoryConfig()
    minutes = t.get("minutes", _at_least(3600.0, parse_duration), d.minutes)
    history = HistoryConfig(minutes=minutes, hours=t.get("hours", _at_least(minutes, parse_duration), d.hours))
    t.done()
    return history
