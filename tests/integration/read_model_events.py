"""Known event sequences for the read-model tests, and a way to apply them for real.

`Log` numbers the events as the notification log would and applies them to
projections inside one transaction on a real database, page by page, as the
projector does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from events.base import DomainEvent
from events.breaker import BreakerClosed, BreakerHalfOpened, BreakerOpened
from events.connection import (
    ConnectionAttempted,
    ConnectionRegistered,
    MaintenanceDetected,
    ProviderFailed,
    ProviderLinked,
    SyncCompleted,
    SyncDeferred,
    SyncFailed,
)
from events.errors import ErrorInfo, ErrorType
from projections.engine import Projection
from projections.registry import all_projections
from services.ports import DbConnection, Notification, topic_of

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a whole minute: window edges fall on buckets
BREAKER_ID = uuid.UUID(int=1)
MIN, HOUR = timedelta(minutes=1), timedelta(hours=1)
A, B = uuid.UUID(int=10), uuid.UUID(int=11)  # two connections


def error(code: str = "PROVIDER_DOWN", kind: ErrorType = "provider_down") -> ErrorInfo:
    return ErrorInfo(code=code, message=f"{code} said the provider", type=kind, retryable=True)


@dataclass
class Log:
    notes: list[Notification] = field(default_factory=list)
    versions: dict[uuid.UUID, int] = field(default_factory=dict)

    def envelope(self, stream: uuid.UUID, at: datetime) -> dict[str, Any]:
        version = self.versions[stream] = self.versions.get(stream, 0) + 1
        return {"originator_id": stream, "originator_version": version, "timestamp": at}

    def add(self, event: DomainEvent) -> DomainEvent:
        self.notes.append(
            Notification(
                id=len(self.notes) + 1,
                originator_id=event.originator_id,
                originator_version=event.originator_version,
                topic=topic_of(type(event)),
                event=event,
            )
        )
        return event

    def register(self, conn_id: uuid.UUID, account: str, at: datetime, region: str = "US") -> None:
        self.add(
            ConnectionRegistered(
                **self.envelope(conn_id, at),
                space_id="space-1",
                account_id=account,
                institution_id="ins_1",
                region=region,
            )
        )

    def call(
        self,
        conn_id: uuid.UUID,
        at: datetime,
        provider: str = "plaid",
        outcome: str = "success",
        ms: float = 100.0,
        *,
        op: str = "sync.transactions",
        command: str = "c1",
        attempt: int = 1,
        failover: bool = False,
        region: str = "US",
    ) -> None:
        failed = outcome != "success"
        self.add(
            ConnectionAttempted(
                **self.envelope(conn_id, at),
                command_id=command,
                op=op,
                provider=provider,
                region=region,
                attempt=attempt,
                failover=failover,
                outcome=outcome,  # type: ignore[arg-type]
                response_time_ms=ms,
                error_code="PROVIDER_DOWN" if failed else None,
                error_message="down" if failed else None,
                error_type="provider_down" if failed else None,
            )
        )
        if failed:
            self.add(
                ProviderFailed(
                    **self.envelope(conn_id, at),
                    command_id=command,
                    op=op,
                    provider=provider,
                    region=region,
                    error=error(),
                    response_time_ms=ms,
                )
            )

    def completed(self, conn_id: uuid.UUID, at: datetime, command: str, **kw: Any) -> None:
        fields = {"op": "sync.transactions", "provider": "plaid", "failover_used": False,
                  "attempts": 1, "response_time_ms": 100.0, **kw}  # fmt: skip
        self.add(SyncCompleted(**self.envelope(conn_id, at), command_id=command, **fields))

    def failed(self, conn_id: uuid.UUID, at: datetime, command: str, **kw: Any) -> None:
        fields = {"op": "sync.transactions", "provider": "plaid", "failover_used": False,
                  "attempts": 1, "response_time_ms": 300.0, "error": error(), **kw}  # fmt: skip
        self.add(SyncFailed(**self.envelope(conn_id, at), command_id=command, **fields))

    def deferred(
        self,
        conn_id: uuid.UUID,
        at: datetime,
        command: str,
        resume_at: datetime,
        *,
        refused: bool = False,
    ) -> None:
        # A refusal called nobody: what refused it is the error, and no try was spent.
        self.add(
            SyncDeferred(
                **self.envelope(conn_id, at),
                command_id=command,
                op="sync.transactions",
                tries=0 if refused else 1,
                resume_at=resume_at,
                error=error("all_providers_unavailable", "provider_down")
                if refused
                else error("INSTITUTION_DOWN", "maintenance"),
                command={"command_id": command},
                refused=refused,
                waits=1 if refused else 0,
            )
        )

    def breaker(self, state: str, at: datetime, provider: str = "plaid") -> None:
        env = {**self.envelope(BREAKER_ID, at), "provider": provider, "region": "US"}
        if state == "open":
            until = at + timedelta(seconds=30)
            self.add(BreakerOpened(**env, reason="5 failures in 60 s", open_until=until))
        elif state == "half_open":
            self.add(BreakerHalfOpened(**env))
        else:
            self.add(BreakerClosed(**env, successes=3))


async def apply(
    conn: DbConnection,
    log: Log,
    projections: list[Projection] | None = None,
    *,
    page: int = 1000,
) -> None:
    """Each projection gets the events it handles, in pages of `page`, one transaction each."""
    for projection in projections or all_projections():
        await conn.execute(projection.schema)
        handled = tuple(projection.handles)
        mine = [n for n in log.notes if isinstance(n.event, handled)]
        for start in range(0, len(mine), page):
            async with conn.transaction():
                await projection.apply_page(conn, mine[start : start + page])


def health_log() -> Log:
    log = Log()
    log.register(A, "acct-a", T0 - 48 * HOUR)
    log.call(A, T0 - 25 * HOUR, outcome="failure", ms=900)  # outside 24 h
    log.call(A, T0 - 24 * HOUR, ms=1000)  # exactly 24 h ago: inside
    log.breaker("open", T0 - 10 * MIN)
    log.breaker("half_open", T0 - 9 * MIN)
    log.breaker("closed", T0 - 8 * MIN)
    log.call(A, T0 - 6 * MIN, outcome="failure", ms=500)  # outside 5 min
    log.call(A, T0 - 5 * MIN, ms=100)  # exactly 5 min ago: inside
    log.call(A, T0 - MIN, ms=200)
    log.call(A, T0 - MIN, outcome="timeout", ms=3000)
    log.breaker("open", T0 - 2 * MIN, provider="mx")
    return log


def status_log() -> Log:
    log = Log()
    log.register(A, "acct-a", T0 - 2 * HOUR)
    log.add(ProviderLinked(**log.envelope(A, T0 - 2 * HOUR), command_id="c0", provider="plaid",
                           item_id="item-1", credential_id=uuid.UUID(int=7)))  # fmt: skip
    log.completed(A, T0 - HOUR, "c1")
    log.failed(A, T0 - 30 * MIN, "c2")
    log.deferred(A, T0 - 20 * MIN, "c3", resume_at=T0 + 5 * MIN)
    log.register(B, "acct-b", T0 - 2 * HOUR)
    log.add(MaintenanceDetected(**log.envelope(B, T0 - 10 * MIN), command_id="c4",
                                provider="plaid", until=T0 + HOUR, error_code="MAINT"))  # fmt: skip
    return log
