"""`execute_with_failover`: call the best provider, fail over only where it can work.

A provider's access token is worthless at another provider, so a sync or an
accounts fetch fails over only to providers at which the connection already
holds a link (DESIGN.md, "Failover that can actually work").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from opentelemetry import trace

from events.commands import Command, CreateLink, GetAccounts, SyncTransactions
from events.connection import ProviderRanking
from events.errors import ErrorInfo
from services import tracing
from services.connections.domain import Attempt, Outcome
from services.connections.state import pair_key
from services.failover import (
    DEADLINE_EXCEEDED,
    HEALTH_MARGIN,
    TRY_TIME_SPENT,
    Answer,
    CallRun,
    exhausted_error,
    order_links,
    rank_by_health,
)
from services.providers.base import (
    LinkCredentials,
    LinkRequest,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
)
from services.resilience.board import Permit, call_key
from services.resilience.bulkhead import Bulkhead, BulkheadFullError
from services.resilience.hedging import HedgePolicy, LatencyTracker
from services.resilience.live_health import LiveHealth
from services.resilience.rate_limit import RateLimiter

tracer = trace.get_tracer("syncyard.orchestrator")

# Whole-command budget when the command names no deadline.
DEFAULT_DEADLINE_S = 30.0
# Least time worth starting a provider call with.
MIN_CALL_BUDGET_S = 0.05
# Pages of one link walked per sync command; `has_more` sends the caller back.
MAX_PAGES_PER_SYNC = 10


class BreakerGate(Protocol):
    """Whether a provider may be called now (the breaker board answers this)."""

    async def permit(
        self,
        provider: str,
        region: str,
        call_key: str,
        institution_id: str | None = None,
        *,
        ramped: bool = True,
    ) -> Permit: ...


DEFAULT_IN_CALL_RETRIES: Mapping[str, int] = {"network": 1}


class ProviderDirectory(Protocol):
    def providers_for(self, institution_id: str | None, region: str) -> tuple[str, ...]: ...

    def provider_institution_id(self, institution_id: str, provider: str) -> str | None: ...


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
        hedging: Mapping[str, HedgePolicy] | None = None,
        health_margin: int = HEALTH_MARGIN,
        in_call_retries: Mapping[str, int] | None = None,
        in_call_pause_s: float = 0.1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.providers = providers
        self.hierarchy = hierarchy
        self.call_timeout_s = call_timeout_s
        self.gate = gate
        self.bulkheads = bulkheads or {}
        self.limiter = limiter
        self.hedging = dict(hedging or {})
        self.health_margin = health_margin
        # Only network blips are retried in the call by default: a provider that is
        # down or rate-limiting us will not be better in 100 ms.
        self.in_call_retries = dict(
            DEFAULT_IN_CALL_RETRIES if in_call_retries is None else in_call_retries
        )
        self.in_call_pause_s = in_call_pause_s
        self._rng = rng or random.Random()
        # The institution mapping, when known, orders an institution's providers.
        self.directory: ProviderDirectory | None = None
        # Every replica's calls, as the log reports them, reorder a choice of providers.
        self.health: LiveHealth | None = None
        self.latencies = LatencyTracker()
        self._clock = clock
        self._wall_clock = wall_clock

    def _budget_s(self, cmd: Command) -> float:
        if cmd.deadline is None:
            return DEFAULT_DEADLINE_S
        deadline = cmd.deadline if cmd.deadline.tzinfo else cmd.deadline.replace(tzinfo=UTC)
        return (deadline - self._wall_clock()).total_seconds()

    async def execute_with_failover(
        self,
        cmd: Command,
        links: Sequence[LinkCredentials],
        region: str,
        *,
        institution_id: str | None = None,
        person_waiting: bool = False,
    ) -> Outcome:
        """`institution_id` is the connection's bank (syncyard's id), whose breaker at
        each provider is asked too; absent, the command's own `institution_id`.

        `person_waiting`: someone is in front of a screen for this (a link being
        made, its first sync). Breakers still refuse it, but the ramp after a
        breaker closes does not hold it back: the ramp spreads a backlog of
        background syncs, and a few people linking are not that herd.
        """
        candidates, ranking = self._ranked(cmd, links, region)
        run = CallRun(candidates, ranking, self._clock)
        run.institution_id = institution_id or cmd.institution_id
        run.person_waiting = person_waiting
        budget_end = run.started + self._budget_s(cmd)
        hedge = self.hedging.get(cmd.op)
        consumed: set[int] = set()  # candidates already called as a hedge partner
        for index, link in enumerate(run.candidates):
            if index in consumed:
                continue
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
                # Only the command's own deadline ends it for good; our budget per
                # try (no deadline given) ends this try, and a deferral goes on.
                spent = DEADLINE_EXCEEDED if cmd.deadline is not None else TRY_TIME_SPENT
                return run.finish(success=False, provider=link.provider, error=spent)
            timeout_s = min(remaining, self.call_timeout_s)
            partner = self._hedge_partner(run, index) if hedge else None
            if hedge is not None and partner is not None:
                answer, used, partner_settled = await self._hedged(
                    cmd, link, partner, region=region, timeout_s=timeout_s, run=run, policy=hedge
                )
                if partner_settled:
                    consumed.add(partner)
            else:
                answer, used = await self._attempt(adapter, cmd, link, timeout_s, run), link
                answer = await self._retry_in_call(
                    adapter, cmd, link, answer, budget_end=budget_end, run=run
                )
            if answer is None:  # not sent (bulkhead full): try the next provider
                continue
            if isinstance(answer, ErrorInfo):
                # The error's table says whether a link at another provider can
                # serve the call: our quota or credentials at one provider can be
                # routed around, the bank's own outage cannot (retrying later can).
                if _failover_helps(run, answer):
                    continue
                if used is not run.candidates[-1]:
                    answer = msgspec.structs.replace(
                        answer,
                        message=f"{answer.message}; no failover: a {answer.type} error "
                        "is not one a backup provider can fix",
                    )
                return run.finish(success=False, provider=used.provider, error=answer)
            data, summary = answer
            return run.finish(success=True, provider=used.provider, data=data, summary=summary)
        return run.finish(
            success=False,
            provider=run.attempts[-1].provider if run.attempts else None,
            error=exhausted_error(run.last_error, run.candidates, run.attempts, run.skipped),
        )

    def _ranked(
        self, cmd: Command, links: Sequence[LinkCredentials], region: str
    ) -> tuple[list[LinkCredentials], ProviderRanking | None]:
        """The directory's order, adjusted by live health when there is a choice."""
        order = (
            self.directory.providers_for(cmd.institution_id, region)
            if self.directory is not None
            else self.hierarchy.get(region, ())
        )
        candidates = order_links(links, cmd.preferred_provider, order)
        if self.health is None or len(candidates) < 2:
            return candidates, None
        scores = self.health.scores((c.provider for c in candidates), region, self._wall_clock())
        return rank_by_health(candidates, scores, self.health_margin)

    async def _retry_in_call(
        self,
        adapter: ProviderAdapter,
        cmd: Command,
        link: LinkCredentials,
        answer: Answer,
        *,
        budget_end: float,
        run: CallRun,
    ) -> Answer:
        """Spend the small in-call budget: a blip (a dropped connection) is often
        gone a moment later, and the same provider is the one whose data we have.
        Anything longer is for failover, or for a durable deferral."""
        tries = 0
        while isinstance(answer, ErrorInfo) and answer.retryable:
            if tries >= self.in_call_retries.get(answer.type, 0):
                break
            pause = self._rng.uniform(0.5, 1.0) * self.in_call_pause_s
            remaining = budget_end - self._clock() - pause
            if remaining < MIN_CALL_BUDGET_S:
                break
            if not await self._another_call_permitted(link.provider, cmd.op):
                break  # the limit is spent: the error stands, failover or a deferral follows
            tries += 1
            await asyncio.sleep(pause)
            answer = await self._attempt(
                adapter, cmd, link, min(remaining, self.call_timeout_s), run
            )
        return answer

    def _hedge_partner(self, run: CallRun, index: int) -> int | None:
        later = range(index + 1, len(run.candidates))
        return next((i for i in later if run.candidates[i].provider in self.providers), None)

    async def _hedged(
        self,
        cmd: Command,
        first: LinkCredentials,
        partner_index: int,
        *,
        region: str,
        timeout_s: float,
        run: CallRun,
        policy: HedgePolicy,
    ) -> tuple[Answer, LinkCredentials, bool]:
        """Call `first`; if it is slower than its recent p95, call the partner too.

        The first success wins and the other call is cancelled (recorded as
        such); if both fail, the more telling error is returned.
        """
        second = run.candidates[partner_index]
        calls = {
            asyncio.ensure_future(
                self._attempt(self.providers[first.provider], cmd, first, timeout_s, run)
            ): first
        }
        delay = self.latencies.hedge_after_s(first.provider, cmd.op, policy)
        done, _ = await asyncio.wait(calls, timeout=delay)
        # Once the hedge was due, the partner is settled either way: called now, or
        # refused by its breaker or limiter (asking again later would repeat that).
        partner_settled = not done
        if not done and await self._admitted(second, region, cmd, run):
            attempt = self._attempt(self.providers[second.provider], cmd, second, timeout_s, run)
            calls[asyncio.ensure_future(attempt)] = second
        pending = set(calls)
        failures: list[tuple[Answer, LinkCredentials]] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                answer = task.result()
                if isinstance(answer, tuple):
                    for loser in pending:
                        loser.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    return answer, calls[task], partner_settled
                failures.append((answer, calls[task]))
        # Both failed (or the hedge was not admitted): a non-retryable error says more.
        failures.sort(key=lambda f: isinstance(f[0], ErrorInfo) and f[0].retryable)
        answer, used = failures[0]
        # When the first call failed before the hedge was due, the partner is
        # still untried: the walk goes on to it as to any backup.
        return answer, used, partner_settled

    async def _admitted(
        self, link: LinkCredentials, region: str, cmd: Command, run: CallRun
    ) -> bool:
        """Breaker, then rate limit: a provider either would fail or must not be called."""
        if self.gate is not None:
            permit = await self.gate.permit(
                link.provider,
                region,
                call_key(cmd.space_id, cmd.command_id),
                institution_id=run.institution_id,
                ramped=not run.person_waiting,
            )
            if not permit.allowed:
                # Skipped without a call: the breaker already knows this would fail.
                run.skipped.append(f"{link.provider}: {permit.reason}")
                run.refused.append(link.provider)
                if permit.retry_after_s is not None:
                    run.waits.append(max(0.0, permit.retry_after_s))
                return False
        if self.limiter is not None:
            decision = await self.limiter.acquire(link.provider, cmd.op)
            if not decision.allowed:
                # Never sent to cause a 429: a backup provider, or a deferral, instead.
                run.skipped.append(decision.reason)
                run.refused.append(link.provider)
                if decision.retry_after_s is not None:
                    run.waits.append(decision.retry_after_s)
                return False
        return True

    async def _another_call_permitted(self, provider: str, op: str) -> bool:
        """A provider call after an attempt's first (a page, a retry in the call) takes its
        own permit: a provider's rate limit counts calls, not syncs.

        Never waits for one: a walk waiting out a limit's window (up to an hour)
        would hold its bulkhead slot and its connection's turn in the worker, and
        outlive its call's timeout. Ending there keeps what was walked; the next
        sync, refused without a call until the window allows, goes on from it."""
        if self.limiter is None:
            return True
        return (await self.limiter.acquire(provider, op)).allowed

    async def _attempt(
        self,
        adapter: ProviderAdapter,
        cmd: Command,
        link: LinkCredentials,
        timeout_s: float,
        run: CallRun,
    ) -> Answer:
        """One call: its answer, its classified error, or None when it was not sent."""
        bulkhead = self.bulkheads.get(link.provider)
        call_started = self._clock()
        failover = bool(run.attempts or run.skipped)
        with tracing.span(
            tracer,
            f"provider.{cmd.op}",
            attributes={"syncyard.provider": link.provider, "syncyard.failover": failover},
        ) as span:
            try:
                async with bulkhead.slot() if bulkhead else contextlib.nullcontext():
                    answer = await self._call(adapter, cmd, link, timeout_s)
            except asyncio.CancelledError:
                # A hedge partner answered first: this call was cut short, and it cost.
                run.attempts.append(
                    Attempt(
                        provider=link.provider,
                        failover=failover,
                        response_time_ms=(self._clock() - call_started) * 1000.0,
                        cancelled=True,
                    )
                )
                raise
            except BulkheadFullError as exc:
                # Not the provider's fault and nothing was sent: skip, don't count;
                # a slot is likely free again after as long as this one waited.
                run.skipped.append(str(exc))
                run.refused.append(link.provider)
                if bulkhead is not None:
                    run.waits.append(bulkhead.max_wait_s)
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
                        failover_helps=exc.failover_helps,
                    )
                )
                return exc.error
        elapsed_ms = (self._clock() - call_started) * 1000.0
        self.latencies.record(link.provider, cmd.op, elapsed_ms)
        run.attempts.append(
            Attempt(provider=link.provider, failover=failover, response_time_ms=elapsed_ms)
        )
        return answer

    async def _pages(
        self,
        adapter: ProviderAdapter,
        cmd: SyncTransactions,
        link: LinkCredentials,
        timeout_s: float,
    ) -> TransactionsPage:
        """The link's pages from its own cursor until the provider has no more.

        Bounded by `MAX_PAGES_PER_SYNC`, the call's time and the provider's rate
        limit (each page after the first takes a permit of its own; `_admitted`
        took the first's): the rest is left for the next sync (`has_more`). A page
        after the first that fails, or finds no permit, ends the walk with what
        came before it, whose cursor is still good; only a first page's failure
        fails the call (and may fail over).
        """
        count = cmd.count
        deadline = self._clock() + timeout_s
        page = await adapter.sync_transactions(
            link, cursor=link.cursor, count=count, timeout_s=timeout_s
        )
        added, modified, removed = list(page.added), list(page.modified), list(page.removed)
        for _ in range(MAX_PAGES_PER_SYNC - 1):
            remaining = deadline - self._clock()
            if not page.has_more or remaining < MIN_CALL_BUDGET_S or _not_ready(page, link):
                break
            if not await self._another_call_permitted(link.provider, cmd.op):
                break
            try:
                page = await adapter.sync_transactions(
                    link, cursor=page.next_cursor, count=count, timeout_s=remaining
                )
            except ProviderCallError as exc:
                if exc.restarts_pagination:
                    raise  # the earlier pages are void: the next try starts over
                break
            added.extend(page.added)
            modified.extend(page.modified)
            removed.extend(page.removed)
        return TransactionsPage(
            added=added,
            modified=modified,
            removed=removed,
            next_cursor=page.next_cursor,
            has_more=page.has_more,
        )

    async def _call(
        self, adapter: ProviderAdapter, cmd: Command, link: LinkCredentials, timeout_s: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if isinstance(cmd, SyncTransactions):
            page = await self._pages(adapter, cmd, link, timeout_s)
            data = msgspec.to_builtins(page)
            summary = {
                "added": len(page.added),
                "modified": len(page.modified),
                "removed": len(page.removed),
                "has_more": page.has_more,
            }
            return data, summary
        if isinstance(cmd, GetAccounts):
            accounts = await adapter.get_accounts(link, timeout_s=timeout_s)
            return msgspec.to_builtins(accounts), {"accounts": len(accounts.accounts)}
        if isinstance(cmd, CreateLink):
            institution = None
            if cmd.institution_id is not None and self.directory is not None:
                institution = self.directory.provider_institution_id(
                    cmd.institution_id, link.provider
                )
            request = LinkRequest(
                # One provider user per account: colliding refs would share one.
                user_ref=pair_key(cmd.space_id, cmd.account_id),
                institution_id=institution,
                products=cmd.products,
                country_codes=cmd.country_codes,
                webhook_url=cmd.webhook_url,
                redirect_uri=cmd.redirect_uri,
            )
            token = await adapter.create_link(request, timeout_s=timeout_s)
            return {"provider": link.provider, **msgspec.to_builtins(token)}, {}
        raise TypeError(f"{cmd.op} is not a provider call")


def _failover_helps(run: CallRun, error: ErrorInfo) -> bool:
    """Whether the call that failed with `error` may go on to the next link.

    The attempt that recorded it carries its table's `failover_helps` (a hedged
    pair's failures are told apart by identity). An error no provider call made
    (a provider without an adapter) is ours to route around.
    """
    for attempt in reversed(run.attempts):
        if attempt.error is error:
            return attempt.failover_helps
    return True


def _not_ready(page: TransactionsPage, link: LinkCredentials) -> bool:
    """A provider still preparing the item (Plaid's NOT_READY) answers an empty page that
    says "more" without moving the cursor: asking again at once would only repeat it."""
    empty = not (page.added or page.modified or page.removed)
    return empty and page.next_cursor in ("", link.cursor)
