"""A breaker's window of recent calls, and the rule that says when it opens (pure)."""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from events.breaker import CountedCall
from events.errors import ERROR_TYPES, Blame, default_blame
from services.resilience.policy import BreakerPolicy

# Which breaker a window belongs to: one bank's at a provider, or the provider's own.
Scope = Literal["institution", "provider"]


class Observation(msgspec.Struct, frozen=True, kw_only=True):
    """One finished provider call as the log reports it."""

    notification_id: int
    command_id: str
    at: datetime
    outcome: str
    error_type: str | None
    error_code: str | None
    response_time_ms: float
    blame: Blame | None = None
    institution_id: str | None = None

    def whose(self) -> Blame | None:
        """Whose failure this call was; None for a call that did not fail."""
        if self.outcome in ("success", "cancelled"):
            return None
        if self.blame is not None:
            return self.blame
        if self.outcome == "timeout":
            return "provider"
        kind = self.error_type if self.error_type in ERROR_TYPES else "unknown"
        return default_blame(kind)

    def slow(self, policy: BreakerPolicy) -> bool:
        return policy.slow_call_ms is not None and self.response_time_ms >= policy.slow_call_ms

    def counted(self) -> CountedCall:
        return CountedCall(
            notification_id=self.notification_id,
            command_id=self.command_id,
            at=self.at,
            outcome=self.outcome,
            error_code=self.error_code,
            response_time_ms=self.response_time_ms,
        )


class Window:
    """Recent calls, pruned by time or count, with running counts (a breaker sees
    every call: a recount per call would cost O(window)); plus what probes
    reported since half-opening.

    A provider-wide window keeps the banks' failures apart from the provider's
    own: they count only once they span `spanning_institutions` banks.
    """

    def __init__(self, scope: Scope = "provider", *, spanning_institutions: int = 3) -> None:
        self.scope = scope
        self.spanning_institutions = spanning_institutions
        self.calls: deque[tuple[Observation, Blame | None, bool]] = deque()
        self.own_failures = 0  # failures that are this breaker's for certain
        self.bank_failures: Counter[str | None] = Counter()  # provider-wide: by bank
        self.slow = 0
        self.since: datetime | None = None  # when this count started
        self.probe_results: dict[str, bool] = {}

    def reset(self) -> None:
        """A transition starts a fresh count: old failures must not re-trip a closed breaker."""
        self.calls.clear()
        self.own_failures = self.slow = 0
        self.bank_failures.clear()
        self.since = None
        self.probe_results.clear()

    def failed(self, call: Observation) -> bool:
        """Does this call count as a failure of this breaker?"""
        whose = call.whose()
        if self.scope == "institution":
            return whose == "institution"
        return whose == "provider" or (whose == "institution" and self._spans())

    def _spans(self) -> bool:
        return len(self.bank_failures) >= self.spanning_institutions

    @property
    def failures(self) -> int:
        spanning = self.scope == "provider" and self._spans()
        return self.own_failures + (sum(self.bank_failures.values()) if spanning else 0)

    def add(self, call: Observation, policy: BreakerPolicy, now: datetime) -> None:
        whose, slow = call.whose(), call.slow(policy)
        if self.since is None:
            self.since = call.at
        self.calls.append((call, whose, slow))
        self._count(call, whose, slow, +1)
        self.prune(policy, now)

    def _count(self, call: Observation, whose: Blame | None, slow: bool, sign: int) -> None:
        self.slow += sign * slow
        if self.scope == "institution":
            self.own_failures += sign * (whose == "institution")
        elif whose == "provider":
            self.own_failures += sign
        elif whose == "institution":
            self.bank_failures[call.institution_id] += sign
            if self.bank_failures[call.institution_id] <= 0:
                del self.bank_failures[call.institution_id]

    def _drop_oldest(self) -> None:
        call, whose, slow = self.calls.popleft()
        self._count(call, whose, slow, -1)

    def prune(self, policy: BreakerPolicy, now: datetime) -> None:
        if policy.window_kind == "count":
            while len(self.calls) > policy.window_calls:
                self._drop_oldest()
        else:
            horizon = now - timedelta(seconds=policy.window_s)
            while self.calls and self.calls[0][0].at < horizon:
                self._drop_oldest()

    def counted(self) -> list[CountedCall]:
        """The calls that count against the breaker, for the BreakerOpened event."""
        return [
            call.counted()
            for call, whose, slow in self.calls
            if slow or self._counts_against(whose)
        ]

    def _counts_against(self, whose: Blame | None) -> bool:
        if self.scope == "institution":
            return whose == "institution"
        return whose == "provider" or (whose == "institution" and self._spans())

    def low_volume(self, policy: BreakerPolicy) -> bool:
        """Fewer than `minimum_calls` calls a window, as far as the calls since the
        count started show (a fresh window projects its rate over the whole window)."""
        if policy.window_kind == "count" or not self.calls or self.since is None:
            return True
        seen_s = (self.calls[-1][0].at - self.since).total_seconds()
        if seen_s >= policy.window_s:
            return len(self.calls) < policy.minimum_calls
        least_s = policy.window_s / max(policy.minimum_calls, 1)
        projected = len(self.calls) * policy.window_s / max(seen_s, least_s)
        return projected < policy.minimum_calls

    def trip_reason(self, policy: BreakerPolicy) -> str | None:
        """Why this window should open the breaker, or None (BreakerPolicy's rule)."""
        total = len(self.calls)
        if total >= policy.minimum_calls:
            return self._rate_reason(policy, total)
        return self._floor_reason(policy, total)

    def _rate_reason(self, policy: BreakerPolicy, total: int) -> str | None:
        failures = self.failures
        if policy.failure_rate is not None and failures / total >= policy.failure_rate:
            return f"failure rate {failures / total:.0%} over {total} calls"
        if policy.slow_call_rate is not None and self.slow / total >= policy.slow_call_rate:
            return f"slow-call rate {self.slow / total:.0%} over {total} calls"
        return None

    def _floor_reason(self, policy: BreakerPolicy, total: int) -> str | None:
        failures, threshold = self.failures, policy.failure_threshold
        if threshold is None or failures < threshold:
            return None
        if failures == total:
            return f"{failures} failures and no success within the window"
        if not self.low_volume(policy):
            return None
        return (
            f"{failures} failures within the window at low volume "
            f"({total} calls; threshold {threshold})"
        )
