"""Scripted faults and call counts: what the admin API arms and the providers obey.

One seeded `random.Random` decides every probabilistic fault, so a run with
the same seed and the same calls in the same order fails the same way.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec

Provider = Literal["plaid", "mx"]


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scripted misbehaviour, as posted to `POST /_admin/faults`.

    `endpoint` matches a route by its template or any suffix of it (for MX
    "/transactions" matches "/users/{user_guid}/members/{member_guid}/transactions");
    absent, every endpoint of the provider. `status` defaults to the provider's
    usual status for `error_code`. `count` limits the fault to the next N calls
    it fires on; `rate` is the chance it fires on each matching call.
    """

    provider: Provider
    endpoint: str | None = None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    error_code: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=600_000.0)] | None = None
    body: Literal["garbage", "truncated"] | None = None
    retry_after_s: Annotated[float, msgspec.Meta(ge=0.0)] | None = None

    def targets(self, endpoint: str) -> bool:
        return self.endpoint is None or endpoint.endswith(self.endpoint)


class CallCount(msgspec.Struct, kw_only=True):
    calls: int = 0
    faulted: int = 0


class _Armed(msgspec.Struct, kw_only=True):
    id: int
    fault: Fault
    remaining: int | None


class FaultBook:
    """The armed faults and the calls each provider endpoint received."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._armed: list[_Armed] = []
        self._next_id = 1
        self._calls: dict[str, dict[str, CallCount]] = {}

    def arm(self, fault: Fault) -> int:
        fault_id = self._next_id
        self._next_id += 1
        self._armed.append(_Armed(id=fault_id, fault=fault, remaining=fault.count))
        return fault_id

    def clear(self) -> None:
        self._armed.clear()

    def reset(self) -> None:
        """Forget faults and counts and re-seed, so the next run repeats the last."""
        self._armed.clear()
        self._calls.clear()
        self._rng = random.Random(self._seed)
        self._next_id = 1

    def draw(
        self, provider: str, endpoint: str, accepts: Callable[[Fault, str], bool] | None = None
    ) -> Fault | None:
        """Count one call and return the first armed fault that fires on it."""
        count = self._calls.setdefault(provider, {}).setdefault(endpoint, CallCount())
        count.calls += 1
        for armed in self._armed:
            fault = armed.fault
            if fault.provider != provider or not fault.targets(endpoint):
                continue
            if accepts is not None and not accepts(fault, endpoint):
                continue
            # Roll only for partial rates, so adding a certain fault does not
            # shift the dice of the others.
            if fault.rate < 1.0 and self._rng.random() >= fault.rate:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
                if armed.remaining == 0:
                    self._armed.remove(armed)
            count.faulted += 1
            return fault
        return None

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
