"""Hedged requests: when the first provider is slower than usual, ask the backup too."""

from __future__ import annotations

from collections import deque

import msgspec


class HedgePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Hedge an operation once its call has run past the provider's recent
    `percentile` latency (never sooner than `min_delay_ms`; `default_delay_ms`
    until `min_samples` calls have been seen). Both calls cost: use it where
    latency matters more than the provider bill.
    """

    percentile: float = 0.95
    min_delay_ms: float = 50.0
    default_delay_ms: float = 1000.0
    min_samples: int = 20


class LatencyTracker:
    """Recent successful call latencies per provider and operation (this replica's view)."""

    def __init__(self, window: int = 200) -> None:
        self.window = window
        self._samples: dict[tuple[str, str], deque[float]] = {}

    def record(self, provider: str, op: str, latency_ms: float) -> None:
        samples = self._samples.setdefault((provider, op), deque(maxlen=self.window))
        samples.append(latency_ms)

    def hedge_after_s(self, provider: str, op: str, policy: HedgePolicy) -> float:
        samples = self._samples.get((provider, op))
        if not samples or len(samples) < policy.min_samples:
            return policy.default_delay_ms / 1000.0
        ordered = sorted(samples)
        index = min(len(ordered) - 1, int(policy.percentile * len(ordered)))
        return max(ordered[index], policy.min_delay_ms) / 1000.0
