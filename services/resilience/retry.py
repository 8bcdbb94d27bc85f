"""Retry policy by error class: how long to wait before trying a failed sync again."""

from __future__ import annotations

import random
from collections.abc import Mapping

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """`tries` counts every try, the first included; delays grow by `factor` to `cap_s`.

    With `full_jitter` the delay is uniform in [0, computed): replicas that
    failed together do not come back together.
    """

    tries: int
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0
    full_jitter: bool = False


# The product spec's defaults; auth and validation never retry: trying again
# cannot fix a bad request or a person's expired login.
DEFAULT_RETRY: Mapping[str, RetryPolicy] = {
    "network": RetryPolicy(tries=5, base_s=1.0, factor=2.0, cap_s=60.0, full_jitter=True),
    "rate_limit": RetryPolicy(tries=3, base_s=60.0, factor=1.5, cap_s=300.0),
    "maintenance": RetryPolicy(tries=10, base_s=300.0, factor=2.0, cap_s=3600.0),
    "provider_down": RetryPolicy(tries=5, base_s=30.0, factor=2.0, cap_s=900.0, full_jitter=True),
    "unknown": RetryPolicy(tries=3, base_s=30.0, factor=2.0, cap_s=300.0, full_jitter=True),
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
    if tries_so_far >= policy.tries:
        return None
    if retry_after_s is not None:
        return max(0.0, retry_after_s)
    delay = min(policy.cap_s, policy.base_s * policy.factor ** (tries_so_far - 1))
    if policy.full_jitter:
        delay = (rng or random).uniform(0, delay)
    return delay
