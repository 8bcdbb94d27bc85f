"""The bodies the HTTP API answers with, as structs: each route encodes one of these.

Rows come from the read models' own modules (`projections/`); these structs
wrap them with the query's parameters. The OpenAPI description's schemas are
generated from them (`infra/http/openapi.py`), so what is served and what is
described cannot drift apart.
"""

from __future__ import annotations

import msgspec

from projections.breakers import BreakerRow
from projections.connection_attempts import AttemptRow
from projections.connection_status import ConnectionStatusRow
from projections.health_rules import HealthStatus
from projections.overview import ProjectionLagRow
from projections.provider_health_query import BreakerView, ProviderHealthRow
from projections.reliability import (
    ConnectionReliabilityRow,
    FailoverHourRow,
    ProviderReliabilityRow,
)
from projections.row_types import Rate, Time
from projections.saga_status import SagaCounts, SagaRow, SagaStatus
from projections.sync_log import SyncLogRow


class Liveness(msgspec.Struct, frozen=True, kw_only=True):
    """The process answers."""

    status: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """Each dependency's check: `ok`, or why it is unreachable."""

    ready: bool
    checks: dict[str, str]


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class ApiError(msgspec.Struct, frozen=True, kw_only=True):
    """A refused request: `bad_request` names the parameter and what it accepts."""

    error: ErrorDetail


class ProviderHealth(msgspec.Struct, frozen=True, kw_only=True):
    region: str | None
    as_of: Time
    providers: list[ProviderHealthRow]


class Breakers(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the breakers that ever changed state (the others are closed): per
    provider and bank, and provider-wide (`institution_id` null), with operators'
    holds; ordered by provider, region, then bank (the provider-wide one first).
    `has_more`: more follow; pass `next_after` as `after` for them (null on the last page)."""

    breakers: list[BreakerRow]
    has_more: bool
    next_after: str | None


class ProviderReliability(msgspec.Struct, frozen=True, kw_only=True):
    since: Time
    until: Time
    currency: str
    providers: list[ProviderReliabilityRow]


class FailoverRates(msgspec.Struct, frozen=True, kw_only=True):
    since: Time
    until: Time
    region: str | None
    hours: list[FailoverHourRow]


class ConnectionHistory(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    attempts: list[AttemptRow]


class ConnectionStatuses(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    as_of: Time
    connections: list[ConnectionStatusRow]


class ConnectionSyncs(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    syncs: list[SyncLogRow]


class ConnectionReliability(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    since: Time
    until: Time
    connections: list[ConnectionReliabilityRow]


class LastError(msgspec.Struct, frozen=True, kw_only=True):
    at: Time | None
    code: str
    message: str | None
    type: str | None


class ProviderSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One provider and region for an operator: breaker, the last 24 hours, the last error."""

    provider: str
    region: str
    status: HealthStatus
    breaker: BreakerView
    success_rate_24h: Rate | None
    avg_response_ms_24h: float | None
    last_error: LastError | None


class AdminStats(msgspec.Struct, frozen=True, kw_only=True):
    as_of: Time
    providers: list[ProviderSummary]
    projections: list[ProjectionLagRow]


class Sagas(msgspec.Struct, frozen=True, kw_only=True):
    status: SagaStatus | None
    counts: SagaCounts
    sagas: list[SagaRow]
