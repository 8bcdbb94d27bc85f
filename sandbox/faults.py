"""Scripted faults and call counts: what the admin API arms, scenarios load, providers obey.

One seeded `random.Random` decides every probabilistic fault and every drawn
latency, so a run with the same seed and the same calls in the same order
fails the same way. Time windows (`start_s`, `end_s`) are read on an injected
clock, relative to when the fault was armed or its scenario loaded.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from sandbox.fault_spec import (
    Fault,
    LogNormal,
    Provider,
    RequestContext,
    Scenario,
)

__all__ = [
    "CallCount",
    "Fault",
    "FaultBook",
    "LogNormal",
    "Provider",
    "RequestContext",
    "Scenario",
]


QUOTA_WINDOW_S = 60.0


class CallCount(msgspec.Struct, kw_only=True):
    calls: int = 0
    faulted: int = 0


class _Armed(msgspec.Struct, kw_only=True):
    id: int
    fault: Fault
    remaining: int | None
    since: float
    recent: deque[float] = msgspec.field(default_factory=deque)  # quota: calls let through


def _about(fault: Fault, context: RequestContext) -> bool:
    """Whether a fault's institution and region filters take in `context` (any endpoint)."""
    if fault.institution is not None and fault.institution != context.institution_id:
        return False
    if fault.institution_name is not None and fault.institution_name != context.institution_name:
        return False
    return fault.region is None or fault.region == context.region


class FaultBook:
    """The armed faults, the active scenario's faults, and the calls each endpoint received."""

    def __init__(
        self,
        seed: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        default_scenario: Scenario | None = None,
    ) -> None:
        self._seed = seed
        self._clock = clock
        self._rng = random.Random(seed)
        self._armed: list[_Armed] = []
        self._next_id = 1
        self._calls: dict[str, dict[str, CallCount]] = {}
        self._default_scenario = default_scenario
        self._scenario: Scenario | None = None
        self._scenario_faults: list[_Armed] = []
        self._scenario_since = 0.0
        # Told of every scenario loaded (the scenario's item webhooks run apart).
        self.on_load: Callable[[Scenario | None], None] | None = None
        self.load_scenario(default_scenario)

    def load_scenario(self, scenario: Scenario | None) -> None:
        """Replace the active scenario; its timeline starts now. None: no scenario."""
        self._scenario = scenario
        self._scenario_since = self._clock()
        faults = scenario.faults if scenario is not None else []
        self._scenario_faults = [
            _Armed(id=0, fault=f, remaining=f.count, since=self._scenario_since) for f in faults
        ]
        if self.on_load is not None:
            self.on_load(scenario)

    @property
    def active_scenario(self) -> Scenario | None:
        return self._scenario

    def scenario(self) -> dict[str, Any]:
        """The active scenario, how long it has run, and its faults."""
        if self._scenario is None:
            return {"name": None, "description": "", "elapsed_s": None, "faults": []}
        return {
            "name": self._scenario.name,
            "description": self._scenario.description,
            "elapsed_s": round(self._clock() - self._scenario_since, 3),
            "faults": [msgspec.to_builtins(f) for f in self._scenario.faults],
            "item_webhooks": [msgspec.to_builtins(w) for w in self._scenario.item_webhooks],
        }

    def arm(self, fault: Fault, *, since: float | None = None) -> int:
        fault_id = self._next_id
        self._next_id += 1
        when = self._clock() if since is None else since
        self._armed.append(_Armed(id=fault_id, fault=fault, remaining=fault.count, since=when))
        return fault_id

    def clear(self) -> None:
        self._armed.clear()

    def reset(self) -> None:
        """Forget faults and counts, re-seed, and restart the default scenario,
        so the next run repeats the last."""
        self._armed.clear()
        self._calls.clear()
        self._rng = random.Random(self._seed)
        self._next_id = 1
        self.load_scenario(self._default_scenario)

    def now(self) -> float:
        return self._clock()

    def aims_at_institutions(self, provider: str) -> bool:
        """Whether a fault on `provider` (armed, or the scenario's) is aimed at an
        institution or a region: only then does what a call is about matter to `draw`."""
        return any(
            armed.fault.provider == provider
            and (
                armed.fault.institution is not None
                or armed.fault.institution_name is not None
                or armed.fault.region is not None
            )
            for armed in (*self._armed, *self._scenario_faults)
        )

    def draw(
        self,
        provider: str,
        endpoint: str,
        accepts: Callable[[Fault, str], bool] | None = None,
        context: RequestContext | None = None,
    ) -> Fault | None:
        """Count one call and return what fires on it: the first fault that replaces
        the answer, carrying the delay of every fault that fires, or else the delay alone.
        """
        count = self._calls.setdefault(provider, {}).setdefault(endpoint, CallCount())
        count.calls += 1
        now = self._clock()
        delay, slow, replacing = 0.0, None, None
        for armed in [*self._armed, *self._scenario_faults]:
            fault = armed.fault
            # Once an answer is replaced, only delays still add up; other
            # replacements are not even rolled for, so they keep their dice.
            if replacing is not None and not fault.only_slows:
                continue
            if not self._fires(
                armed,
                provider=provider,
                endpoint=endpoint,
                accepts=accepts,
                context=context,
                now=now,
            ):
                continue
            delay += fault.latency_ms or 0.0
            if fault.latency is not None:
                delay += fault.latency.draw(self._rng)
            if fault.only_slows:
                slow = slow or fault
            else:
                retry_after = self._retry_after(armed, now)
                replacing = msgspec.structs.replace(fault, retry_after_s=retry_after)
        fired = replacing or slow
        if fired is None:
            return None
        count.faulted += 1
        return msgspec.structs.replace(fired, latency_ms=delay or None)

    def _fires(
        self,
        armed: _Armed,
        *,
        provider: str,
        endpoint: str,
        accepts: Callable[[Fault, str], bool] | None,
        context: RequestContext | None,
        now: float,
    ) -> bool:
        fault = armed.fault
        if fault.provider != provider or not fault.targets(endpoint, context):
            return False
        if not fault.active(now - armed.since):
            return False
        if accepts is not None and not accepts(fault, endpoint):
            return False
        if fault.quota_per_minute is not None:
            while armed.recent and now - armed.recent[0] >= QUOTA_WINDOW_S:
                armed.recent.popleft()
            if len(armed.recent) < fault.quota_per_minute:
                armed.recent.append(now)
                return False
        # Roll only for partial rates, so adding a certain fault does not
        # shift the dice of the others.
        if fault.rate < 1.0 and self._rng.random() >= fault.rate:
            return False
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining == 0:
                self._discard(armed)
        return True

    def _discard(self, armed: _Armed) -> None:
        for faults in (self._armed, self._scenario_faults):
            if armed in faults:
                faults.remove(armed)

    @staticmethod
    def _retry_after(armed: _Armed, now: float) -> float | None:
        fault = armed.fault
        if fault.quota_per_minute is not None and armed.recent:
            return max(QUOTA_WINDOW_S - (now - armed.recent[0]), 0.0)
        if fault.retry_after_s == "until_end":
            if fault.end_s is None:
                return None
            return max(fault.end_s - (now - armed.since), 0.0)
        return fault.retry_after_s

    def active(self, provider: str, context: RequestContext) -> list[tuple[Fault, float]]:
        """The faults that would apply to a call about `context` now, each with how
        long ago (seconds) it started applying; nothing is counted or rolled."""
        now = self._clock()
        found = []
        for armed in [*self._armed, *self._scenario_faults]:
            fault = armed.fault
            if fault.provider != provider or not fault.active(now - armed.since):
                continue
            if not _about(fault, context):
                continue
            started = armed.since + (fault.start_s or 0.0)
            found.append((fault, now - started))
        return found

    def faults(self) -> list[dict[str, Any]]:
        return [
            {"id": a.id, "remaining": a.remaining, **msgspec.to_builtins(a.fault)}
            for a in self._armed
        ]

    def calls(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            provider: {
                endpoint: {"calls": c.calls, "faulted": c.faulted}
                for endpoint, c in sorted(endpoints.items())
            }
            for provider, endpoints in sorted(self._calls.items())
        }
