"""How a breaker decides: thresholds, windows and timeouts, configurable per provider and region."""

from __future__ import annotations

from typing import Literal

import msgspec


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a breaker opens, and how it comes back.

    Which failures count: only those whose blame (events/errors.py) is the
    provider's or the bank's. A breaker of a provider at a bank counts the bank's
    failures ("institution": INSTITUTION_DOWN, NOT_RESPONDING, maintenance); the
    provider-wide breaker counts the provider's own (its 5xx, timeouts, its rate
    limit, a garbled answer), and the banks' only once they come from at least
    `spanning_institutions` different banks within the window. A person's,
    caller's or syncyard's own failure never counts. Every call counts as a call.

    The rule, over the calls of the last `window_s` (5 minutes):

    - at volume, once the window holds `minimum_calls` (20) calls, it opens when
      the failure rate reaches `failure_rate` (50 %);
    - below 20 calls, the seed's floor: `failure_threshold` (5) failures open it
      when the volume is low (fewer than 20 calls a window, projected from the
      calls seen since the window started counting, over at least
      `window_s / minimum_calls` seconds), or when not one call succeeded.

    Why these numbers: 50 % is where a provider fails more often than it works,
    and at that rate a retry elsewhere or later is the better bet; 20 calls is
    the least that tells 50 % from a provider's usual 30-40 % (the industry's
    figure, `seed-failure-model`). Noise remains in a fresh window: a random
    35 % mix reaches 50 % somewhere in its first 100 calls about one time in
    five (tests/unit/test_breaker_rule.py), so a busy breaker that starts
    counting may still trip on it, and then re-closes after one timeout; once
    the window holds its usual volume (hundreds of calls), 35 % stays far from
    50 %, and a provider's usual failures, split by blame between its breakers,
    are further still. The floor keeps a quiet bank's 5 failures in 5 minutes
    opening its breaker, and a burst of 5 failures with no success opening any
    breaker, without letting a busy provider's usual failures trip it 5 at a
    time.

    Then: open for `open_timeout_s` (60 s); one probe at a time; 2 successes
    close it; a failed probe re-opens it; once closed (by its probes, or by a
    release from open), the waiting work is let through on a ramp (`ramp.py`).
    As in resilience4j, a count-based window (`window_kind="count"`) and a
    slow-call rate are also offered.
    """

    window_kind: Literal["time", "count"] = "time"
    window_s: float = 300.0
    window_calls: int = 100
    failure_threshold: int | None = 5
    failure_rate: float | None = 0.5
    minimum_calls: int = 20
    spanning_institutions: int = 3
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


class PolicyBook(msgspec.Struct, frozen=True, kw_only=True):
    """The default policy with overrides by "provider" or "provider/region"."""

    default: BreakerPolicy = BreakerPolicy()
    overrides: dict[str, BreakerPolicy] = {}

    def for_(self, provider: str, region: str) -> BreakerPolicy:
        return self.overrides.get(
            f"{provider}/{region}", self.overrides.get(provider, self.default)
        )
