"""How a site's state may change, as data: (state, event) -> state, with guards. Pure.

The supervisor's Lifecycle is the one place that applies this table; every other part asks it for a change.
A pair that is not in the table is a bug somewhere (two parts disagreeing about a site): the Lifecycle
refuses it, logs it and records it as an event row, and the state stays as it was.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from activator.model import SiteState

STOPPED, STARTING, RUNNING = SiteState.STOPPED, SiteState.STARTING, SiteState.RUNNING
DRAINING, PAUSED = SiteState.DRAINING, SiteState.PAUSED


class Event(enum.StrEnum):
    START = "start"  # a start begins: a request, a persistent site, a restart after a crash
    WAKE = "wake"  # a paused site is unpaused for a request
    UP = "up"  # the start or wake answered its readiness probe
    START_FAILED = "start_failed"  # the start or wake gave up (the app exited, timed out, the engine failed)
    DRAIN = "drain"  # routed to the activator, open requests end, then a pause or stop
    KEEP = "keep"  # a drain gives the site back: a request arrived, or the drain could not go on
    PAUSED = "paused"  # the drain's pause is done
    STOPPED = "stopped"  # our own stop is done, or a holder's recovery ended with nobody waiting
    DIED = "died"  # the container ended outside our control: a crash, an OOM kill, a stop from outside
    HOLDER_LOST = "holder_lost"  # its network holder died: the recovery is the site's transition
    ADOPT_RUNNING = "adopt_running"  # found running at startup
    ADOPT_PAUSED = "adopt_paused"  # found paused at startup
    SWAPPED = "swapped"  # a deploy's new container answers beside the old: it takes over the site


class Guard(enum.Enum):
    IDLE = "requests are waiting for it"  # (the text says why the guard refused)
    MAY_START = "its crash backoff does not allow a start yet"


@dataclass(frozen=True)
class Facts:
    """What the guards look at."""

    waiting: int  # requests held for the site
    may_start: bool  # not failing, or its backoff has run out


@dataclass(frozen=True)
class Rule:
    target: SiteState | None  # None: allowed, and the state stays (the event is another part's business)
    guard: Guard | None = None


STAY = Rule(None)

TABLE: Mapping[tuple[SiteState, Event], Rule] = {
    (STOPPED, Event.START): Rule(STARTING, Guard.MAY_START),
    (STOPPED, Event.ADOPT_RUNNING): Rule(RUNNING),
    (STOPPED, Event.ADOPT_PAUSED): Rule(PAUSED),
    (STOPPED, Event.DIED): STAY,  # the late "die" of a container we stopped
    (STOPPED, Event.HOLDER_LOST): STAY,  # nothing runs in it: the holder is brought back, the site waits
    (STOPPED, Event.SWAPPED): Rule(RUNNING),  # the old container died during the swap: the new one serves
    (STARTING, Event.UP): Rule(RUNNING),
    (STARTING, Event.START_FAILED): Rule(STOPPED),
    (STARTING, Event.STOPPED): Rule(STOPPED),  # a holder's recovery with nobody waiting
    (STARTING, Event.DIED): STAY,  # the start watches its own container and decides
    (STARTING, Event.HOLDER_LOST): STAY,  # the start's probe fails at once and it starts again
    (RUNNING, Event.DRAIN): Rule(DRAINING, Guard.IDLE),
    (RUNNING, Event.DIED): Rule(STOPPED),
    (RUNNING, Event.HOLDER_LOST): Rule(STARTING),
    (RUNNING, Event.SWAPPED): STAY,
    (DRAINING, Event.KEEP): Rule(RUNNING),
    (DRAINING, Event.PAUSED): Rule(PAUSED),
    (DRAINING, Event.STOPPED): Rule(STOPPED),
    (DRAINING, Event.DIED): STAY,  # our own stop's "die", or a death the drain's stop finds
    (DRAINING, Event.HOLDER_LOST): STAY,  # the drain ends first; the recovery looks again after it
    (PAUSED, Event.WAKE): Rule(STARTING),
    (PAUSED, Event.DRAIN): Rule(DRAINING, Guard.IDLE),  # evicted or stopped while paused
    (PAUSED, Event.DIED): Rule(STOPPED),
    (PAUSED, Event.HOLDER_LOST): Rule(STARTING),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    target: SiteState  # the state after the event (the same one when refused, or for a STAY rule)
    refusal: str = ""  # why it was refused


def decide(state: SiteState, event: Event, facts: Facts) -> Decision:
    rule = TABLE.get((state, event))
    if rule is None:
        return Decision(False, state, f"{event} is not allowed while {state}")
    if rule.guard is Guard.IDLE and facts.waiting > 0:
        return Decision(False, state, f"{event} refused while {state}: {rule.guard.value}")
    if rule.guard is Guard.MAY_START and not facts.may_start:
        return Decision(False, state, f"{event} refused while {state}: {rule.guard.value}")
    return Decision(True, rule.target or state)
