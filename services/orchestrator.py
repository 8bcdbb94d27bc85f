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
from services.resilience.rate_limit import RateLimiter

tracer = trace.get_tracer("syncyard.orchestrator")

# Whole-command budget when the command names no deadline.
DEFAULT_DEADLINE_S = 30.0
# Least time worth starting a provider call with.
MIN_CALL_BUDGET_S = 0.05


DEADLINE_EXCEEDED = ErrorInfo(
    code="deadline_exceeded",
    message="the command's deadline passed before a provider could answer",
    type="network",
    retryable=False,
)


class _Run:
    """One command's walk down its candidate providers: what was tried and skipped."""

    def __init__(self, candidates: list[LinkCredentials], clock: Callable[[], float]) -> None:
        self.candidates = candidates
        self.clock = clock
        self.started = clock()
        self.attempts: list[Attempt] = []
        self.skipped: list[str] = []
        self.waits: list[float] = []  # when skipped or failed providers said to come back
        self.last_error: ErrorInfo | None = None

    def finish(self, **fields: Any) -> Outcome:
        used = fields.get("provider")
        return Outcome(
            retry_after_s=min(self.waits) if self.waits else None,
            attempts=tuple(self.attempts),
            response_time_ms=(self.clock() - self.started) * 1000.0,
            failover_used=used is not None and used != self.candidates[0].provider,
            skipped=tuple(self.skipped),
            **fields,
        )


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
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.providers = providers
        self.hierarchy = hierarchy
        self.call_timeout_s = call_timeout_s
        self.gate = gate
        self.bulkheads = bulkheads or {}
        self.limiter = limiter
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
        run = _Run(
            order_links(links, cmd.preferred_provider, self.hierarchy.get(region, ())),
            self._clock,
        )
        budget_end = run.started + self._budget_s(cmd)
        for link in run.candidates:
            adapter = self.providers.get(link.provider)
            if adapter is None:
                run.last_error = ErrorInfo(
                    code="unknown_provider",
                    message=f"no adapter configured for provider {link.provider!r}",
                    type="validation",
                    retryable=True,
                    provider=link.provider,
                )
                continue
            if not await self._admitted(link, region, cmd, run):
                continue
            remaining = budget_end - self._clock()
            if remaining < MIN_CALL_BUDGET_S:
                return run.finish(success=False, provider=link.provider, error=DEADLINE_EXCEEDED)
            answer = await self._attempt(
                adapter, cmd, link, min(remaining, self.call_timeout_s), run
            )
            if answer is None:  # not sent (bulkhead full): try the next provider
                continue
            if isinstance(answer, ErrorInfo):
                if answer.retryable:
                    continue
                if link is not run.candidates[-1]:
                    answer = msgspec.structs.replace(
                        answer,
                        message=f"{answer.message}; no failover: a {answer.type} error "
                        "is not one a backup provider can fix",
                    )
                return run.finish(success=False, provider=link.provider, error=answer)
            data, summary = answer
            return run.finish(success=True, provider=link.provider, data=data, summary=summary)
        return run.finish(
            success=False,
            provider=run.attempts[-1].provider if run.attempts else None,
            error=self._exhausted_error(run.last_error, run.candidates, run.attempts, run.skipped),
        )

    async def _admitted(self, link: LinkCredentials, region: str, cmd: Command, run: _Run) -> bool:
        """Breaker, then rate limit: a provider either would fail or must not be called."""
        if self.gate is not None:
            permit = await self.gate.permit(link.provider, region, cmd.command_id)
            if not permit.allowed:
                # Skipped without a call: the breaker already knows this would fail.
                run.skipped.append(f"{link.provider}: {permit.reason}")
                return False
        if self.limiter is not None:
            decision = await self.limiter.acquire(link.provider, cmd.op)
            if not decision.allowed:
                # Never sent to cause a 429: a backup provider, or a deferral, instead.
                run.skipped.append(decision.reason)
                if decision.retry_after_s is not None:
                    run.waits.append(decision.retry_after_s)
                return False
        return True

    async def _attempt(
        self,
        adapter: ProviderAdapter,
        cmd: Command,
        link: LinkCredentials,
        timeout_s: float,
        run: _Run,
    ) -> tuple[dict[str, Any], dict[str, Any]] | ErrorInfo | None:
        """One call: its answer, its classified error, or None when it was not sent."""
        bulkhead = self.bulkheads.get(link.provider)
        call_started = self._clock()
        failover = bool(run.attempts or run.skipped)
        with tracer.start_as_current_span(
            f"provider.{cmd.op}",
            attributes={"syncyard.provider": link.provider, "syncyard.failover": failover},
        ) as span:
            try:
                async with bulkhead.slot() if bulkhead else contextlib.nullcontext():
                    answer = await self._call(adapter, cmd, link, timeout_s)
            except BulkheadFullError as exc:
                # Not the provider's fault and nothing was sent: skip, don't count.
                run.skipped.append(str(exc))
                return None
            except ProviderCallError as exc:
                if exc.retry_after_s is not None:
                    run.waits.append(exc.retry_after_s)
                    if exc.error.type == "rate_limit" and self.limiter is not None:
                        await self.limiter.block(link.provider, cmd.op, exc.retry_after_s)
                span.set_attribute("syncyard.error.code", exc.error.code)
                span.set_status(trace.StatusCode.ERROR, exc.error.type)
                run.last_error = exc.error
                run.attempts.append(
                    Attempt(
                        provider=link.provider,
                        failover=failover,
                        response_time_ms=(self._clock() - call_started) * 1000.0,
                        error=exc.error,
                        timed_out=exc.error.code == "timeout",
                        retry_after_s=exc.retry_after_s,
                        reauth_required=exc.reauth_required,
                    )
                )
                return exc.error
        run.attempts.append(
            Attempt(
                provider=link.provider,
                failover=failover,
                response_time_ms=(self._clock() - call_started) * 1000.0,
            )
        )
        return answer

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
