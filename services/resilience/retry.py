"""Retry policy by error class, and when a sync that did not succeed runs again.

Two ways a sync can come back (docs: services/resilience/README.md, "Waiting"):

- **it failed**: a provider was called and answered an error time can fix. The
  try is spent and the next one waits a growing, capped, jittered backoff;
- **it was refused**: syncyard called nobody (a breaker open or probing, a rate
  limit, a full bulkhead, a known maintenance window). No try is spent: it
  waits until the refusal lifts, plus a little jitter, and runs again.

Either way a sync ends for good only when its error needs a person (or a fixed
request), when it reaches the maximum age counted from its first receipt, or
at its own deadline, whichever comes first.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

# Growth stops long before this; it only keeps `factor ** n` a finite float.
_MAX_EXPONENT = 64
# A refusal's wait is stretched by up to this share (at most the cap), so the
# commands one open breaker refused do not all come back in the same instant,
# and one held by a two-hour maintenance is not held half an hour longer.
REFUSAL_JITTER = 0.25
REFUSAL_JITTER_CAP_S = 60.0
# A refusal that names no time to come back (it should not happen) waits this.
REFUSAL_FALLBACK_S = 1.0
# How long a sync keeps being retried, from its first receipt (Settings.sync_max_age_s).
DEFAULT_SYNC_MAX_AGE = timedelta(hours=24)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Delays grow by `factor` from `base_s` to `cap_s`, one step per try spent.

    `tries` counts every try, the first included: None keeps retrying until
    the sync's maximum age, a number ends the sync once that many are spent.
    With `full_jitter` the delay is uniform in [0, computed): replicas that
    failed together do not come back together.
    """

    tries: int | None = None
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    full_jitter: bool = False


# Errors time can fix are retried until the maximum age; auth and validation
# never: trying again cannot fix a bad request or a person's expired login.
DEFAULT_RETRY: Mapping[str, RetryPolicy] = {
    "network": RetryPolicy(base_s=1.0, factor=2.0, cap_s=60.0, full_jitter=True),
    "rate_limit": RetryPolicy(base_s=60.0, factor=1.5, cap_s=300.0),
    "maintenance": RetryPolicy(base_s=300.0, factor=2.0, cap_s=3600.0),
    "provider_down": RetryPolicy(base_s=30.0, factor=2.0, cap_s=900.0, full_jitter=True),
    "unknown": RetryPolicy(base_s=30.0, factor=2.0, cap_s=300.0, full_jitter=True),
    "auth": RetryPolicy(tries=1),
    "validation": RetryPolicy(tries=1),
}


def retry_delay_s(
    policy: RetryPolicy,
    tries_so_far: int,
    *,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next try, or None when the tries are spent.

    A provider's own `Retry-After` (or maintenance end) wins over the backoff.
    """
    if policy.tries is not None and tries_so_far >= policy.tries:
        return None
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    exponent = min(max(tries_so_far - 1, 0), _MAX_EXPONENT)
    delay = min(policy.cap_s, policy.base_s * policy.factor**exponent)
    if policy.full_jitter:
        delay = (rng or random).uniform(0, delay)
    return delay


def refusal_delay_s(lifts_in_s: float | None, rng: random.Random | None = None) -> float:
    """Seconds until a refused command runs again: when the refusal lifts, plus jitter."""
    wait = REFUSAL_FALLBACK_S if lifts_in_s is None else max(0.0, lifts_in_s)
    return wait + (rng or random).uniform(0.0, min(wait * REFUSAL_JITTER, REFUSAL_JITTER_CAP_S))


GiveUp = Literal["not_retryable", "tries_spent", "max_age", "deadline"]


class NextTry(msgspec.Struct, frozen=True, kw_only=True):
    """What becomes of a sync that did not succeed: run again at `resume_at`, or end.

    `gave_up` says why it ends (None while it waits); `refused` that this wait
    spends no try, because no provider was called.
    """

    resume_at: datetime | None = None
    refused: bool = False
    gave_up: GiveUp | None = None


def decide_next_try(
    *,
    error_type: str,
    retryable: bool,
    refused: bool,
    retry_after_s: float | None,
    tries: int,
    received_at: datetime,
    now: datetime,
    policies: Mapping[str, RetryPolicy],
    max_age: timedelta,
    deadline: datetime | None,
    rng: random.Random | None = None,
) -> NextTry:
    """Pure: when a sync that did not succeed runs again, or why it ends now.

    `tries` counts the tries spent, this one included when a provider was
    called; `refused` means none was (its `retry_after_s` is when the refusal
    lifts). The maximum age counts from `received_at`, the sync's first
    receipt; the command's own `deadline` wins when it is earlier.
    """
    if not retryable:
        return NextTry(gave_up="not_retryable")
    if refused:
        delay = refusal_delay_s(retry_after_s, rng)
    else:
        policy = policies.get(error_type)
        if policy is None:
            return NextTry(gave_up="not_retryable")
        backoff = retry_delay_s(policy, tries, retry_after_s=retry_after_s, rng=rng)
        if backoff is None:
            return NextTry(gave_up="tries_spent")
        delay = backoff
    resume_at = now + timedelta(seconds=delay)
    if resume_at - received_at > max_age:
        return NextTry(gave_up="max_age")
    if deadline is not None and resume_at >= _aware(deadline):
        return NextTry(gave_up="deadline")
    return NextTry(resume_at=resume_at, refused=refused)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
