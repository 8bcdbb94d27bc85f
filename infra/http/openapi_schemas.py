"""JSON Schemas of the read-model responses, for the OpenAPI description (infra/http/openapi.py)."""

from __future__ import annotations

from typing import Any, get_args

from events.connection import AttemptOutcome
from events.saga import SagaKind
from projections.attempt_types import AttemptType
from projections.connection_status import ConnectionStatus
from projections.health_rules import BreakerState, HealthStatus
from projections.saga_status import SAGA_STATUSES

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
STR_N: Schema = {"type": ["string", "null"]}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
NUM_N: Schema = {"type": ["number", "null"]}
RATE_N: Schema = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
TIME_N: Schema = {"type": ["string", "null"], "format": "date-time"}


def obj(**properties: Schema) -> Schema:
    return {"type": "object", "properties": properties}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


def enum_of(literal: Any) -> Schema:
    """The values of a `Literal` the code uses, so the description cannot drift from it."""
    return enum(*get_args(literal))


WINDOW = obj(
    successes=INT,
    failures=INT,
    success_rate=RATE_N,
    error_rate=RATE_N,
    avg_response_ms=NUM_N,
    p95_response_ms={**NUM_N, "description": "upper bound of the histogram bucket (<= 19% above)"},
)
BREAKER = obj(state=enum_of(BreakerState), since=TIME_N, open_until=TIME_N, reason=STR_N)
PROVIDER_HEALTH = obj(
    provider=STR,
    region=STR,
    status=enum_of(HealthStatus),
    health_score={"type": "integer", "minimum": 0, "maximum": 100},
    successes=INT,
    failures=INT,
    timeouts=INT,
    error_rate=NUM,
    avg_response_ms=NUM_N,
    window_5m=WINDOW,
    window_24h=WINDOW,
    last_success_at=TIME_N,
    last_failure_at=TIME_N,
    last_error_at=TIME_N,
    last_error_code=STR_N,
    last_error_message=STR_N,
    last_error_type=STR_N,
    breaker=BREAKER,
)
ATTEMPT = obj(
    space_id=STR,
    account_id=STR,
    command_id=STR,
    op=STR,
    attempt_type=enum_of(AttemptType),
    provider=STR,
    region=STR,
    attempt=INT,
    failover=BOOL,
    failover_from=STR_N,
    failover_to=STR_N,
    status=enum_of(AttemptOutcome),
    outcome={**enum_of(AttemptOutcome), "description": "= status"},
    response_time_ms=NUM,
    error_code=STR_N,
    error_message=STR_N,
    error_type=STR_N,
    occurred_at=TIME,
)
CONNECTION_STATUS = obj(
    connection_id=STR,
    space_id=STR,
    account_id=STR,
    institution_id=STR_N,
    region=STR,
    status=enum_of(ConnectionStatus),
    providers=arr(STR),
    last_success_at=TIME_N,
    last_successful_sync_at=TIME_N,
    last_failure_at=TIME_N,
    consecutive_failures=INT,
    last_error_code=STR_N,
    last_error_message=STR_N,
    in_maintenance=BOOL,
    maintenance_provider=STR_N,
    maintenance_since=TIME_N,
    maintenance_until=TIME_N,
    requires_reauth=BOOL,
    reauth_providers=arr(STR),
    next_retry_at=TIME_N,
    relink_failing_provider=STR_N,
    relink_suggested_provider=STR_N,
    relink_down_since=TIME_N,
    updated_at=TIME,
)
SYNC = obj(
    space_id=STR,
    account_id=STR,
    command_id=STR,
    op=STR,
    attempt_type=enum_of(AttemptType),
    provider=STR_N,
    outcome=enum("success", "failure", "deferred"),
    failover_used=BOOL,
    attempts=INT,
    duration_ms=NUM_N,
    error_code=STR_N,
    error_message=STR_N,
    occurred_at=TIME,
)
_STATS: dict[str, Schema] = {
    "total": INT, "successful": INT, "failed": INT, "deferred": INT,
    "success_rate": RATE_N, "avg_duration_ms": NUM_N,
}  # fmt: skip
CONNECTION_RELIABILITY = obj(connection_id=STR, space_id=STR, account_id=STR, **_STATS)
PROVIDER_RELIABILITY = obj(
    provider=STR, **_STATS, calls=INT, price_per_call=NUM_N, estimated_cost=NUM
)
FAILOVER_HOUR = obj(
    provider=STR, region=STR, hour=TIME, calls=INT, failovers=INT, failover_rate=RATE_N
)
PERIOD: dict[str, Schema] = {"since": TIME, "until": TIME}

ADMIN_STATS = obj(
    as_of=TIME,
    providers=arr(
        obj(
            provider=STR,
            region=STR,
            status=enum_of(HealthStatus),
            breaker=BREAKER,
            success_rate_24h=RATE_N,
            avg_response_ms_24h=NUM_N,
            last_error={
                "type": ["object", "null"],
                "properties": {"at": TIME_N, "code": STR, "message": STR, "type": STR},
            },
        )
    ),
    projections=arr(
        obj(
            projection=STR,
            position=INT,
            log_position=INT,
            events_behind=INT,
            updated_at=TIME,
            age_s=NUM,
        )
    ),
)
OVERVIEW = obj(
    **PERIOD,
    connections=obj(
        total=INT,
        active=INT,
        with_errors=INT,
        in_maintenance=INT,
        requiring_reauth=INT,
        health_rate=RATE_N,
    ),
    syncs=obj(total=INT, successful=INT, failed=INT, success_rate=RATE_N),
    reliability_score={"type": ["number", "null"], "minimum": 0, "maximum": 100},
)

SAGA = obj(
    saga_id={"type": "string", "format": "uuid"},
    kind=enum_of(SagaKind),
    command_id=STR,
    space_id=STR,
    account_id=STR,
    status=enum(*SAGA_STATUSES),
    step={**STR_N, "description": "the step (or compensation) it is at, or stopped on"},
    reason={**STR_N, "description": "why it is compensating, aborted or needs attention"},
    started_at=TIME,
    updated_at=TIME,
)

RESPONSES: dict[str, Schema] = {
    "/v1/sagas": obj(
        status=STR_N,
        counts=obj(**dict.fromkeys(SAGA_STATUSES, INT)),
        sagas=arr(SAGA),
    ),
    "/v1/providers/health": obj(region=STR_N, as_of=TIME, providers=arr(PROVIDER_HEALTH)),
    "/v1/providers/reliability": obj(**PERIOD, currency=STR, providers=arr(PROVIDER_RELIABILITY)),
    "/v1/providers/failover-rates": obj(**PERIOD, region=STR_N, hours=arr(FAILOVER_HOUR)),
    "/v1/connections/{account_id}/history": obj(account_id=STR, attempts=arr(ATTEMPT)),
    "/v1/connections/{account_id}/status": obj(
        account_id=STR, as_of=TIME, connections=arr(CONNECTION_STATUS)
    ),
    "/v1/connections/{account_id}/syncs": obj(account_id=STR, syncs=arr(SYNC)),
    "/v1/connections/{account_id}/reliability": obj(
        account_id=STR, **PERIOD, connections=arr(CONNECTION_RELIABILITY)
    ),
    "/v1/admin/stats": ADMIN_STATS,
    "/v1/metrics/overview": OVERVIEW,
    "/healthz": obj(status=STR),
    "/readyz": obj(ready=BOOL, checks={"type": "object", "additionalProperties": STR}),
    "/v1/openapi.json": {"type": "object", "description": "an OpenAPI 3.1 document"},
}
