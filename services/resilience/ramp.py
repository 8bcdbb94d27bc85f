"""The ramp after a breaker closes: the share of commands let through doubles each interval.

When the half-open probes succeed, or a release lets calls through a breaker
held open (or open, or half-open), the work that waited behind the breaker
must not reach the provider all at once. For `ramp_intervals` intervals after
`BreakerClosed` (or that `BreakerReleased`: `Breaker.closed_at`), a command
is let through only if its place in the ramp (a hash of its id and of the
moment the breaker closed, uniform in [0, 1)) is below the share open now:
`ramp_start_share` in the first interval, twice that in the next, and so on
up to everyone. A refused command is told exactly when its place opens, so
the queue comes back spread over the ramp, not in a herd.

Pure and stateless: every replica computes the same share from the same
`BreakerClosed` or `BreakerReleased` event, so none needs another's count of
calls let through.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from services.resilience.policy import BreakerPolicy


def ramp_place(command_id: str, closed_at: datetime) -> float:
    """Where a command stands in this ramp, uniform in [0, 1); a new ramp reshuffles."""
    digest = hashlib.blake2b(f"{closed_at.isoformat()}/{command_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2**64


def ramp_share(closed_at: datetime, now: datetime, policy: BreakerPolicy) -> float:
    """The share of commands let through at `now`: doubling each interval, then 1."""
    if policy.ramp_start_share >= 1.0 or policy.ramp_interval_s <= 0:
        return 1.0
    step = math.floor((now - closed_at).total_seconds() / policy.ramp_interval_s)
    return min(1.0, policy.ramp_start_share * 2.0 ** max(step, 0))


def ramp_wait_s(
    command_id: str, closed_at: datetime, now: datetime, policy: BreakerPolicy
) -> float | None:
    """None when the ramp lets `command_id` through now; else seconds until it does."""
    place = ramp_place(command_id, closed_at)
    if place < ramp_share(closed_at, now, policy):
        return None
    step = 0
    while policy.ramp_start_share * 2.0**step <= place:
        step += 1
    opens_at = step * policy.ramp_interval_s
    return max(0.0, opens_at - (now - closed_at).total_seconds())
