"""How many instances a scalable site wants: pure, time an argument.

Knative's autoscaler, sized for small sites: a stable window (60 s) whose rate decides in the ordinary case, and
a panic window (a tenth of it, and at least 6 s) that scales up at once when the rate there passes twice the threshold.
Scaling down waits `scale_down_delay` below what fewer instances carry (so a rate that oscillates around the
threshold does not oscillate the instances), and never happens within a stable window of a panic."""

from __future__ import annotations

from dataclasses import dataclass

from activator.core.thresholds import CLEAR_MARGIN

STABLE_WINDOW = 60.0  # seconds (a site's scale_window)
PANIC_SHARE = 0.1  # the panic window, as a share of the stable one (Knative's panic-window-percentage) ...
# ... and at least this long: a second or two of a small site holds one request or two, which cannot tell a
# burst from chance (a 1 s window would panic at any request once the threshold is 30 a minute).
MIN_PANIC_WINDOW = 6.0
PANIC_FACTOR = 2.0  # the panic window's rate must pass this many times the threshold


@dataclass(frozen=True)
class ScalePolicy:
    threshold: float  # requests per minute per instance that call for one more
    scale_down_delay: float = 300.0
    minimum: int = 1
    maximum: int = 2
    window: float = STABLE_WINDOW

    @property
    def panic_window(self) -> float:
        return max(MIN_PANIC_WINDOW, self.window * PANIC_SHARE)


@dataclass(frozen=True)
class ScaleState:
    instances: int = 1
    below_since: float | None = None  # when the stable rate last went below what fewer instances could carry
    panicking_until: float | None = None  # the panic mode holds for a stable window after its last trigger


@dataclass(frozen=True)
class Decision:
    state: ScaleState
    reason: str  # why the count changed, or "" when it did not


def decide(policy: ScalePolicy, state: ScaleState, stable_rpm: float, panic_rpm: float, now: float) -> Decision:
    """The instances wanted now, from the requests per minute over the stable and the panic windows (for the
    whole site, all instances together)."""
    n = state.instances
    per_instance = policy.threshold
    panic = panic_rpm >= PANIC_FACTOR * per_instance * n
    panicking_until = now + policy.window if panic else state.panicking_until
    panicking = panicking_until is not None and now < panicking_until
    if n < policy.maximum and (stable_rpm > per_instance * n or panic):
        why = "panic" if panic and stable_rpm <= per_instance * n else "stable"
        text = f"{why} window: {panic_rpm if why == 'panic' else stable_rpm:.0f} requests/min"
        return Decision(ScaleState(n + 1, None, panicking_until), f"up to {n + 1}: {text}")
    # What fewer instances carry, less the margin thresholds clear by: between the two, the count holds.
    fewer_carry = stable_rpm <= per_instance * (n - 1) * (1 - CLEAR_MARGIN)
    if n > policy.minimum and fewer_carry and not panicking:
        since = state.below_since if state.below_since is not None else now
        if now - since >= policy.scale_down_delay:
            text = f"{stable_rpm:.0f} requests/min for {policy.scale_down_delay:g} s"
            return Decision(ScaleState(n - 1, None, panicking_until), f"down to {n - 1}: {text}")
        return Decision(ScaleState(n, since, panicking_until), "")
    return Decision(ScaleState(n, None, panicking_until), "")
