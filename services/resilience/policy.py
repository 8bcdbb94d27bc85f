"""How a breaker decides: thresholds, windows and timeouts, configurable per provider and region."""

from __future__ import annotations

from typing import Literal

import msgspec

# Validation and auth errors say nothing about the provider's health: a bad
# request or one person's expired login must not cut everyone else off.
DEFAULT_COUNTED_ERRORS = frozenset(
    {"network", "provider_down", "maintenance", "rate_limit", "unknown"}
)


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults from the product spec: 5 failures within 5 minutes open it for 60 s;
    one probe at a time; 2 consecutive successes close it; a failed probe re-opens it;
    once closed, the waiting work is let through on a ramp (`ramp.py`).

    As in resilience4j, a count-based window (`window_kind="count"`), a failure
    rate with a minimum number of calls, and a slow-call rate are also offered.
    """

    window_kind: Literal["time", "count"] = "time"
    window_s: float = 300.0
    window_calls: int = 100
    failure_threshold: int | None = 5
    failure_rate: float | None = None
    minimum_calls: int = 10
    slow_call_ms: float | None = None
    slow_call_rate: float | None = None
    open_timeout_s: float = 60.0
    half_open_permitted_calls: int = 1
    successes_to_close: int = 2
    # Longer than any call may take (the default call timeout is 10 s).
    probe_timeout_s: float = 30.0
    # After closing, the share of commands let through starts here and doubles
    # every interval (services/resilience/ramp.py): 1/8, 1/4, 1/2, all in 30 s.
    ramp_start_share: float = 0.125
    ramp_interval_s: float = 10.0
    counted_errors: frozenset[str] = DEFAULT_COUNTED_ERRORS


class PolicyBook(msgspec.Struct, frozen=True, kw_only=True):
    """The default policy with overrides by "provider" or "provider/region"."""

    default: BreakerPolicy = BreakerPolicy()
    overrides: dict[str, BreakerPolicy] = {}

    def for_(self, provider: str, region: str) -> BreakerPolicy:
        return self.overrides.get(
            f"{provider}/{region}", self.overrides.get(provider, self.default)
        )
