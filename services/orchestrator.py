"""`execute_with_failover`: call the best provider, fail over only where it can work.

A provider's access token is worthless at another provider, so a sync or an
accounts fetch fails over only to providers at which the connection already
holds a link (DESIGN.md, "Failover that can actually work").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from opentelemetry import trace

from events.commands import Command, GetAccounts, SyncTransactions
from events.errors import ErrorInfo
from services.connections.domain import Attempt, Outcome
from services.providers.base import LinkCredentials, ProviderAdapter, ProviderCallError
from services.resilience.board import Permit
from services.resilience.bulkhead import Bulkhead, BulkheadFullError

tracer = trace.get_tracer("syncyard.orchestrator")

# Whole-command budget when the command names no deadline.
DEFAULT_DEADLINE_S = 30.0
# Least time worth starting a provider call with.
MIN_CALL_BUDGET_S = 0.05


class BreakerGate(Protocol):
    """Whether a provider may be called now (the breaker board answers this)."""

    async def permit(self, provider: str, region: str, command_id: str) -> Permit: ...


def order_links(
    links: Sequence[LinkCredentials], preferred: str | None, hierarchy: Sequence[str]
) -> list[LinkCredentials]:
    """Preferred provider first, then the region's hierarchy, then link order."""
    rank = {name: i for i, name in enumerate(hierarchy)}

    def key(indexed: tuple[int, LinkCredentials]) -> tuple[int, int, int]:
        index, link = indexed
        return (0 if link.provider == preferred else 1, rank.get(link.provider, len(rank)), index)

    return [link for _, link in sorted(enumerate(links), key=key)]


class Orchestrator:
    def __init__(
        self,
        providers: Mapping[str, ProviderAdapter],
        *,
        hierarchy: Mapping[str, Sequence[str]],
        call_timeout_s: float = 10.0,
        gate: BreakerGate | None = None,
        bulkheads: Mapping[str, Bulkhead] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.providers = providers
        self.hierarchy = hierarchy
        self.call_timeout_s = call_timeout_s
        self.gate = gate
        self.bulkheads = bulkheads or {}
        self._clock = clock
        self._wall_clock = wall_clock

    def _budget_s(self, cmd: Command) -> float:
        if cmd.deadline is None:
            return DEFAULT_DEADLINE_S
        deadline = cmd.deadline if cmd.deadline.tzinfo else cmd.deadline.replace(tzinfo=UTC)
        return (deadline - self._wall_clock()).total_seconds()

    async def execute_with_failover(
        self, cmd: Command, links: Sequence[LinkCredentials], region: str
    ) -> Outcome:
        started = self._clock()
        budget_end = started + self._budget_s(cmd)
        candidates = order_links(links, cmd.preferred_provider, self.hierarchy.get(region, ()))
        attempts: list[Attempt] = []
        skipped: list[str] = []
        last_error: ErrorInfo | None = None

        def finish(**fields: Any) -> Outcome:
            used = fields.get("provider")
            waits = [a.retry_after_s for a in attempts if a.retry_after_s is not None]
            return Outcome(
                retry_after_s=min(waits) if waits else None,
                attempts=tuple(attempts),
                response_time_ms=(self._clock() - started) * 1000.0,
                failover_used=used is not None and used != candidates[0].provider,
                skipped=tuple(skipped),
                **fields,
            )

        for link in candidates:
            adapter = self.providers.get(link.provider)
            if adapter is None:
                last_error = ErrorInfo(
                    code="unknown_provider",
                    message=f"no adapter configured for provider {link.provider!r}",
                    type="validation",
                    retryable=True,
                    provider=link.provider,
                )
                continue
            if self.gate is not None:
                permit = await self.gate.permit(link.provider, region, cmd.command_id)
                if not permit.allowed:
                    # Skipped without a call: the breaker already knows this would fail.
                    skipped.append(f"{link.provider}: {permit.reason}")
                    continue
            remaining = budget_end - self._clock()
            if remaining < MIN_CALL_BUDGET_S:
                return finish(
                    success=False,
                    provider=link.provider,
                    error=ErrorInfo(
                        code="deadline_exceeded",
                        message="the command's deadline passed before a provider could answer",
                        type="network",
                        retryable=False,
                        provider=None,
                    ),
                )
            bulkhead = self.bulkheads.get(link.provider)
            call_started = self._clock()
            with tracer.start_as_current_span(
                f"provider.{cmd.op}",
                attributes={
                    "syncyard.provider": link.provider,
                    "syncyard.failover": bool(attempts),
                },
            ) as span:
                try:
                    async with bulkhead.slot() if bulkhead else contextlib.nullcontext():
                        data, summary = await self._call(
                            adapter, cmd, link, min(remaining, self.call_timeout_s)
                        )
                except BulkheadFullError as exc:
                    # Not the provider's fault and nothing was sent: skip, don't count.
                    skipped.append(str(exc))
                    continue
                except ProviderCallError as exc:
                    span.set_attribute("syncyard.error.code", exc.error.code)
                    span.set_status(trace.StatusCode.ERROR, exc.error.type)
                    last_error = exc.error
                    attempts.append(
                        Attempt(
                            provider=link.provider,
                            failover=bool(attempts or skipped),
                            response_time_ms=(self._clock() - call_started) * 1000.0,
                            error=exc.error,
                            timed_out=exc.error.code == "timeout",
                            retry_after_s=exc.retry_after_s,
                            reauth_required=exc.reauth_required,
                        )
                    )
                    if not exc.error.retryable:
                        error = exc.error
                        if link is not candidates[-1]:
                            error = msgspec.structs.replace(
                                error,
                                message=f"{error.message}; no failover: a {error.type} error "
                                "is not one a backup provider can fix",
                            )
                        return finish(success=False, provider=link.provider, error=error)
                    continue
            attempts.append(
                Attempt(
                    provider=link.provider,
                    failover=bool(attempts or skipped),
                    response_time_ms=(self._clock() - call_started) * 1000.0,
                )
            )
            return finish(success=True, provider=link.provider, data=data, summary=summary)

        return finish(
            success=False,
            provider=attempts[-1].provider if attempts else None,
            error=self._exhausted_error(last_error, candidates, attempts, skipped),
        )

    @staticmethod
    def _exhausted_error(
        last: ErrorInfo | None,
        candidates: Sequence[LinkCredentials],
        attempts: Sequence[Attempt],
        skipped: Sequence[str],
    ) -> ErrorInfo:
        if candidates and not attempts and skipped:
            return ErrorInfo(
                code="all_providers_unavailable",
                message="no linked provider can be called now: " + "; ".join(skipped),
                type="provider_down",
                retryable=True,
            )
        if not candidates:
            return ErrorInfo(
                code="no_link",
                message="the connection holds no provider link; register one first",
                type="validation",
                retryable=False,
            )
        assert last is not None
        if len(candidates) == 1:
            reason = (
                f"{last.message}; no failover: the connection holds no link at another "
                "provider (a token is only valid at the provider that issued it)"
            )
        else:
            tried = ", ".join(a.provider for a in attempts)
            reason = f"{last.message}; every linked provider failed ({tried})"
            if skipped:
                reason += "; skipped: " + "; ".join(skipped)
        return msgspec.structs.replace(last, message=reason)

    async def _call(
        self, adapter: ProviderAdapter, cmd: Command, link: LinkCredentials, timeout_s: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(cmd, SyncTransactions):
            page = await adapter.sync_transactions(
                link, cursor=cmd.cursor, count=cmd.count, timeout_s=timeout_s
            )
            data = msgspec.to_builtins(page)
            summary = {
                "added": len(page.added),
                "modified": len(page.modified),
                "removed": len(page.removed),
                "has_more": page.has_more,
                "next_cursor": page.next_cursor,
            }
            return data, summary
        if isinstance(cmd, GetAccounts):
            accounts = await adapter.get_accounts(link, timeout_s=timeout_s)
            return msgspec.to_builtins(accounts), {"accounts": len(accounts.accounts)}
        raise TypeError(f"{cmd.op} is not a provider call")
