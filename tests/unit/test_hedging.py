"""Hedged requests: a slow primary gets a backup call; the first success wins."""

from __future__ import annotations

import asyncio

import pytest

from events.commands import SyncTransactions
from events.errors import ErrorInfo
from services.orchestrator import Orchestrator
from services.providers.base import LinkCredentials, TransactionsPage
from services.resilience.hedging import HedgePolicy, LatencyTracker
from tests.unit.test_orchestrator import FakeProvider, link

pytestmark = pytest.mark.unit
SYNC = SyncTransactions(command_id="h1", space_id="s", account_id="a")
QUICK_HEDGE = {"sync.transactions": HedgePolicy(default_delay_ms=10, min_delay_ms=1)}
HIERARCHY = {"US": ("plaid", "mx")}


class StuckProvider(FakeProvider):
    """Answers only when `release` is set: a brown-out, without real waiting."""

    def __init__(self, name: str, *, answer_after_s: float | None = None) -> None:
        super().__init__(name)
        self.answer_after_s = answer_after_s
        self.cancelled = False

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.calls += 1
        try:
            if self.answer_after_s is None:
                await asyncio.Event().wait()
            await asyncio.sleep(self.answer_after_s or 0)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


async def test_a_primary_slower_than_its_usual_gets_a_hedge_and_the_backup_wins() -> None:
    plaid, mx = StuckProvider("plaid"), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, hedging=QUICK_HEDGE)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "mx" and outcome.failover_used
    assert plaid.cancelled and mx.calls == 1
    by_provider = {a.provider: a for a in outcome.attempts}
    assert by_provider["plaid"].cancelled and by_provider["mx"].error is None


async def test_a_primary_answering_in_time_is_not_hedged() -> None:
    plaid, mx = FakeProvider("plaid"), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, hedging=QUICK_HEDGE)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.provider == "plaid" and mx.calls == 0


class GatedProvider(FakeProvider):
    """Answers only once `gate` is set: here, once the hedge has been tried."""

    def __init__(self, name: str, gate: asyncio.Event) -> None:
        super().__init__(name)
        self.gate = gate

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        await self.gate.wait()
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


class FailingBackup(FakeProvider):
    def __init__(self, name: str, error: ErrorInfo, called: asyncio.Event) -> None:
        super().__init__(name, error)
        self.called = called

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.called.set()
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


async def test_when_the_hedge_fails_the_slow_primary_still_answers() -> None:
    down = ErrorInfo(code="DOWN", message="down", type="provider_down", retryable=True)
    hedged = asyncio.Event()
    plaid, mx = GatedProvider("plaid", hedged), FailingBackup("mx", down, hedged)
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, hedging=QUICK_HEDGE)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "plaid"
    assert [a.provider for a in outcome.attempts if a.error] == ["mx"]


async def test_without_a_hedging_policy_a_slow_primary_is_simply_awaited() -> None:
    plaid, mx = StuckProvider("plaid", answer_after_s=0.02), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.provider == "plaid" and mx.calls == 0


def test_the_hedge_delay_is_the_recent_p95_once_there_are_enough_samples() -> None:
    tracker, policy = LatencyTracker(), HedgePolicy(min_samples=20, min_delay_ms=5)
    assert tracker.hedge_after_s("plaid", "op", policy) == policy.default_delay_ms / 1000
    for ms in range(1, 101):
        tracker.record("plaid", "op", float(ms))
    assert tracker.hedge_after_s("plaid", "op", policy) == pytest.approx(0.096)


async def test_a_primary_failing_before_the_hedge_is_due_still_fails_over_to_the_partner() -> None:
    down = ErrorInfo(code="DOWN", message="down", type="provider_down", retryable=True)
    plaid, mx = FakeProvider("plaid", down), FakeProvider("mx")
    slow_hedge = {"sync.transactions": HedgePolicy(default_delay_ms=60_000)}
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, hedging=slow_hedge)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "mx" and outcome.failover_used
