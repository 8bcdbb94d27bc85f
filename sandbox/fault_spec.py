"""What a fault is: the shape posted to `POST /_admin/faults` and listed in scenario files."""

from __future__ import annotations

import math
import random
from typing import Annotated, Literal

import msgspec

# Every provider the sandbox may serve (issue 3's list), so each one's faults can be armed.
Provider = Literal["plaid", "mx", "finicity", "belvo", "bitso", "blockchain", "manual"]
Seconds = Annotated[float, msgspec.Meta(ge=0.0)]
# The z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408


class LogNormal(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A latency distribution given as its median and 99th percentile, in milliseconds."""

    median_ms: Annotated[float, msgspec.Meta(gt=0.0, le=600_000.0)]
    p99_ms: Annotated[float, msgspec.Meta(gt=0.0, le=600_000.0)]

    def draw(self, rng: random.Random) -> float:
        sigma = max(math.log(self.p99_ms / self.median_ms), 0.0) / _Z99
        return min(rng.lognormvariate(math.log(self.median_ms), sigma), 600_000.0)


class RequestContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a call is about, as far as faults care: its institution and region."""

    institution_id: str | None = None
    institution_name: str | None = None
    region: str | None = None


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One scripted misbehaviour, as posted to `POST /_admin/faults` or listed in a scenario.

    `endpoint` matches a route by its template or any suffix of it (for MX
    "/transactions" matches "/users/{user_guid}/members/{member_guid}/transactions");
    absent, every endpoint of the provider. `institution` (the provider's id),
    `institution_name` (stable across seeds) and `region` narrow it to calls
    about one institution or one region. `status` defaults to the
    provider's usual status for `error_code`. `count` limits the fault to the next
    N calls it fires on; `rate` is the chance it fires on each matching call.
    `start_s` / `end_s` bound it in time; `retry_after_s = "until_end"` announces
    the seconds left until `end_s` (a maintenance window that says when it ends).
    `latency_ms` is fixed, `latency` drawn log-normally; `connection` "hang" holds the request open
    `hang_s`, "drip" sends the real answer a few bytes at a time.
    """

    provider: Provider
    endpoint: str | None = None
    institution: str | None = None
    institution_name: str | None = None
    region: str | None = None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None
    error_code: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 1.0
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=600_000.0)] | None = None
    latency: LogNormal | None = None
    body: Literal["garbage", "truncated"] | None = None
    connection: Literal["hang", "drip"] | None = None
    hang_s: Annotated[float, msgspec.Meta(gt=0.0, le=600.0)] = 30.0
    retry_after_s: Seconds | Literal["until_end"] | None = None
    start_s: Seconds | None = None
    end_s: Seconds | None = None
    # A real quota: the fault fires only on calls beyond this many in the last
    # minute (a sliding window), as a provider's rate limit does.
    quota_per_minute: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def targets(self, endpoint: str, context: RequestContext | None = None) -> bool:
        if self.endpoint is not None and not endpoint.endswith(self.endpoint):
            return False
        ctx = context or RequestContext()
        if self.institution is not None and self.institution != ctx.institution_id:
            return False
        if self.institution_name is not None and self.institution_name != ctx.institution_name:
            return False
        return self.region is None or self.region == ctx.region

    def active(self, elapsed_s: float) -> bool:
        starts = self.start_s is None or elapsed_s >= self.start_s
        return starts and (self.end_s is None or elapsed_s < self.end_s)

    @property
    def only_slows(self) -> bool:
        """A fault that delays the real answer without replacing it."""
        return not (self.status or self.error_code or self.body or self.connection)


class ScenarioWebhook(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An item webhook the scenario sends `at_s` after it is loaded.

    It goes to every Plaid Item the link flow has made by then (each to its own
    webhook URL), as Plaid tells each Item of a bank's consent or login trouble:
    `PENDING_EXPIRATION` (the consent ends `consent_expires_in_days` after the
    scenario was loaded, the same end each time it is sent), `PENDING_DISCONNECT`
    (with `reason`), `ERROR` (with `error_code`) or `LOGIN_REPAIRED`.
    """

    at_s: float
    provider: Literal["plaid"] = "plaid"
    webhook_code: str
    consent_expires_in_days: float = 7.0
    reason: str | None = None
    error_code: str | None = None


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named script of faults, and of item webhooks, on a timeline that starts
    when the scenario is loaded."""

    name: str
    description: str = ""
    faults: list[Fault] = []
    item_webhooks: list[ScenarioWebhook] = []
