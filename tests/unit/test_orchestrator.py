"""execute_with_failover's choices, with fake adapters (no HTTP)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from events.commands import GetAccounts, SyncTransactions
from events.errors import ErrorInfo, ErrorType
from services.failover import order_links
from services.orchestrator import MAX_PAGES_PER_SYNC, Orchestrator
from services.providers.base import (
    AccountsPage,
    HealthStatus,
    Institution,
    LinkCredentials,
    LinkRequest,
    LinkToken,
    ProviderAdapter,
    ProviderCallError,
    TransactionsPage,
    WebhookEvent,
)
from services.providers.http import ErrorRule
from services.providers.plaid.errors import PLAID_ERROR_CODES
from services.resilience.rate_limit import RateDecision, RateLimiter

pytestmark = pytest.mark.unit


class FakeProvider(ProviderAdapter):
    def __init__(self, name: str, error: ErrorInfo | None = None) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        self.calls += 1
        if self.error:
            raise ProviderCallError(self.error)
        return AccountsPage(accounts=[{"account_id": f"{self.name}-1"}])

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.calls += 1
        if self.error:
            raise ProviderCallError(self.error)
        return TransactionsPage(
            added=[{"transaction_id": "t1"}],
            modified=[],
            removed=[],
            next_cursor="c1",
            has_more=False,
        )

    # The orchestrator never links, looks up institutions or takes webhooks.
    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        return HealthStatus(healthy=self.error is None, latency_ms=1.0)

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        raise NotImplementedError

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        raise NotImplementedError

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        raise NotImplementedError

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        raise NotImplementedError

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        raise NotImplementedError

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        raise NotImplementedError


def link(provider: str) -> LinkCredentials:
    return LinkCredentials(provider=provider, item_id=f"item-{provider}", access_token="tok")


def err(kind: ErrorType, retryable: bool) -> ErrorInfo:
    return ErrorInfo(
        code=kind.upper(), message=kind, type=kind, retryable=retryable, provider="plaid"
    )


SYNC = SyncTransactions(command_id="c1", space_id="s", account_id="a")
HIERARCHY = {"US": ("plaid", "mx")}


def test_links_are_ordered_preferred_first_then_by_the_regions_hierarchy() -> None:
    ordered = order_links([link("mx"), link("plaid"), link("other")], None, ("plaid", "mx"))
    assert [x.provider for x in ordered] == ["plaid", "mx", "other"]
    ordered = order_links([link("mx"), link("plaid")], "mx", ("plaid", "mx"))
    assert [x.provider for x in ordered] == ["mx", "plaid"]


async def test_a_retryable_error_fails_over_to_the_backup_link() -> None:
    plaid, mx = FakeProvider("plaid", err("provider_down", True)), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "mx" and outcome.failover_used
    assert [a.provider for a in outcome.attempts] == ["plaid", "mx"]
    assert outcome.summary["added"] == 1


async def test_a_non_retryable_error_stops_without_failing_over() -> None:
    plaid, mx = FakeProvider("plaid", err("auth", False)), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert not outcome.success and mx.calls == 0
    assert outcome.error is not None and "no failover" in outcome.error.message


async def test_without_a_backup_link_the_result_says_why_there_was_no_failover() -> None:
    plaid, mx = FakeProvider("plaid", err("provider_down", True)), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")
    assert not outcome.success and not outcome.failover_used and mx.calls == 0
    assert outcome.error is not None
    assert "no link at another provider" in outcome.error.message
    assert outcome.error.retryable


async def test_a_connection_without_links_is_a_validation_error() -> None:
    orch = Orchestrator({}, hierarchy=HIERARCHY)
    outcome = await orch.execute_with_failover(
        GetAccounts(command_id="c", space_id="s", account_id="a"), [], "US"
    )
    assert outcome.error is not None and outcome.error.code == "no_link"


async def test_a_passed_deadline_calls_no_provider() -> None:
    plaid = FakeProvider("plaid")
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)
    late = SyncTransactions(
        command_id="c",
        space_id="s",
        account_id="a",
        deadline=datetime.now(UTC) - timedelta(seconds=1),
    )
    outcome = await orch.execute_with_failover(late, [link("plaid")], "US")
    assert outcome.error is not None and outcome.error.code == "deadline_exceeded"
    assert plaid.calls == 0


class SlowFailure(FakeProvider):
    """Fails as a timeout does: after the whole call time has gone."""

    def __init__(self, name: str, clock: list[float]) -> None:
        super().__init__(name, err("network", True))
        self.clock = clock

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.clock[0] += timeout_s
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


async def test_a_try_out_of_time_without_a_deadline_is_tried_again_not_failed_for_good() -> None:
    now = [0.0]
    slow = {name: SlowFailure(name, now) for name in ("plaid", "mx", "finicity")}
    orch = Orchestrator(
        dict(slow),
        hierarchy={"US": ("plaid", "mx", "finicity")},
        in_call_pause_s=0.0,  # a timeout earns one more try in the call (the default)
        clock=lambda: now[0],
    )
    outcome = await orch.execute_with_failover(
        SYNC, [link("plaid"), link("mx"), link("finicity")], "US"
    )
    assert outcome.error is not None and outcome.error.code == "try_time_spent"
    assert outcome.error.retryable  # deferred by the sync handler, not SyncFailed
    # Plaid twice (its in-call retry) and MX: 3 x 10 s, the whole 30 s budget.
    assert (slow["plaid"].calls, slow["mx"].calls, slow["finicity"].calls) == (2, 1, 0)


class BlipProvider(FakeProvider):
    """Fails its first `blips` calls with `error`, then answers."""

    def __init__(self, name: str, error: ErrorInfo, blips: int) -> None:
        super().__init__(name)
        self.blip_error = error
        self.blips = blips

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        if self.blips > 0:
            self.blips -= 1
            self.calls += 1
            raise ProviderCallError(self.blip_error)
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


async def test_a_network_blip_is_retried_once_at_the_same_provider_before_failing_over() -> None:
    plaid = BlipProvider("plaid", err("network", True), blips=1)
    mx = FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, in_call_pause_s=0.0)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.success and outcome.provider == "plaid" and not outcome.failover_used
    assert [a.error is None for a in outcome.attempts] == [False, True]
    assert mx.calls == 0


async def test_a_provider_that_is_down_is_not_retried_in_the_call_but_failed_over() -> None:
    plaid = BlipProvider("plaid", err("provider_down", True), blips=1)
    mx = FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY, in_call_pause_s=0.0)
    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")
    assert outcome.provider == "mx" and plaid.calls == 1


class PagedProvider(FakeProvider):
    """Pages `c0` → `c1` → … ; `fail_at` raises on that page; `stuck` answers Plaid's not-ready."""

    def __init__(self, pages: int, *, fail_at: int | None = None, stuck: bool = False) -> None:
        super().__init__("plaid")
        self.pages, self.fail_at, self.stuck = pages, fail_at, stuck
        self.cursors: list[str | None] = []

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.cursors.append(cursor)
        if self.stuck:
            return TransactionsPage(
                added=[], modified=[], removed=[], next_cursor="", has_more=True
            )
        n = int((cursor or "c0")[1:])
        if n == self.fail_at:
            raise ProviderCallError(err("provider_down", True))
        return TransactionsPage(
            added=[{"transaction_id": f"t{n}"}],
            modified=[],
            removed=[],
            next_cursor=f"c{n + 1}",
            has_more=n + 1 < self.pages,
        )


async def test_a_sync_walks_the_link_from_its_own_cursor_until_the_provider_has_no_more() -> None:
    plaid = PagedProvider(pages=5)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)
    start = LinkCredentials(provider="plaid", item_id="i", access_token="t", cursor="c2")

    outcome = await orch.execute_with_failover(SYNC, [start], "US")

    assert plaid.cursors == ["c2", "c3", "c4"]
    assert outcome.data is not None and outcome.data["next_cursor"] == "c5"
    assert [t["transaction_id"] for t in outcome.data["added"]] == ["t2", "t3", "t4"]
    assert outcome.data["has_more"] is False


async def test_a_walk_stops_at_its_bound_and_says_there_is_more() -> None:
    plaid = PagedProvider(pages=50)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")

    assert len(plaid.cursors) == MAX_PAGES_PER_SYNC
    assert outcome.data is not None and outcome.data["has_more"] is True


async def test_a_page_that_fails_after_the_first_keeps_the_pages_before_it() -> None:
    plaid = PagedProvider(pages=5, fail_at=2)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")

    assert outcome.success and outcome.data is not None
    assert outcome.data["next_cursor"] == "c2" and outcome.data["has_more"] is True
    assert [t["transaction_id"] for t in outcome.data["added"]] == ["t0", "t1"]


async def test_an_item_the_provider_is_still_preparing_is_asked_once_per_sync() -> None:
    plaid = PagedProvider(pages=5, stuck=True)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")

    assert len(plaid.cursors) == 1
    assert outcome.success and outcome.data is not None and outcome.data["has_more"] is True


class CountingLimiter(RateLimiter):
    """A provider's limit of `permits` calls in all (None: no end), and the permits given."""

    def __init__(self, permits: int | None = None) -> None:
        self.permits = permits
        self.given = 0

    async def acquire(self, provider: str, op: str) -> RateDecision:
        if self.permits is not None and self.given >= self.permits:
            return RateDecision(allowed=False, retry_after_s=60.0, reason=f"{provider}: spent")
        self.given += 1
        return RateDecision(allowed=True)

    async def block(self, provider: str, op: str, seconds: float) -> None:
        self.permits = self.given


async def test_the_limiter_gives_one_permit_per_provider_call_each_page_and_each_retry() -> None:
    limiter = CountingLimiter()
    plaid = PagedProvider(pages=5)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY, limiter=limiter)
    assert (await orch.execute_with_failover(SYNC, [link("plaid")], "US")).success
    assert limiter.given == len(plaid.cursors) == 5

    blipping = BlipProvider("plaid", err("network", True), blips=1)
    limiter = CountingLimiter()
    orch = Orchestrator(
        {"plaid": blipping}, hierarchy=HIERARCHY, limiter=limiter, in_call_pause_s=0.0
    )
    assert (await orch.execute_with_failover(SYNC, [link("plaid")], "US")).success
    assert limiter.given == blipping.calls == 2


async def test_a_walk_out_of_permits_keeps_its_pages_and_the_next_sync_goes_on_from_there() -> None:
    limiter = CountingLimiter(permits=3)
    plaid = PagedProvider(pages=5)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY, limiter=limiter)

    first = await orch.execute_with_failover(SYNC, [link("plaid")], "US")

    # Three permits, three pages: the walk ends there with what it has, never waiting
    # for a fourth, its cursor the third page's, and says there is more.
    assert first.success and first.data is not None and plaid.cursors == [None, "c1", "c2"]
    assert first.data["next_cursor"] == "c3" and first.data["has_more"] is True
    assert [t["transaction_id"] for t in first.data["added"]] == ["t0", "t1", "t2"]
    # Until the limit's window passes, the next sync is refused without a call.
    refused = await orch.execute_with_failover(SYNC, [link("plaid")], "US")
    assert refused.refused_without_call and refused.retry_after_s == 60.0
    assert len(plaid.cursors) == 3

    limiter.permits = limiter.given + 3  # the window passed
    resumed = LinkCredentials(provider="plaid", item_id="i", access_token="t", cursor="c3")
    second = await orch.execute_with_failover(SYNC, [resumed], "US")
    assert second.success and second.data is not None and plaid.cursors[3:] == ["c3", "c4"]
    assert [t["transaction_id"] for t in second.data["added"]] == ["t3", "t4"]
    assert second.data["has_more"] is False and limiter.given == len(plaid.cursors) == 5


class ClassifiedProvider(FakeProvider):
    """Fails every call as a provider's error table classifies `code`."""

    def __init__(self, name: str, code: str, rule: ErrorRule) -> None:
        super().__init__(name)
        self.failure = rule.error(name, code, code)

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        self.calls += 1
        raise self.failure

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        self.calls += 1
        raise self.failure


async def test_a_retryable_error_no_backup_can_fix_waits_instead_of_failing_over() -> None:
    # The bank itself is down: MX reaches the same bank, so calling it would only fail too.
    rule = PLAID_ERROR_CODES["INSTITUTION_DOWN"]
    plaid, mx = ClassifiedProvider("plaid", "INSTITUTION_DOWN", rule), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")

    assert not outcome.success and mx.calls == 0
    assert outcome.error is not None and outcome.error.retryable
    assert outcome.error.blame == "institution"


async def test_an_error_that_is_not_retryable_here_fails_over_when_its_table_says_so() -> None:
    # Our client keys at Plaid: no retry there helps, but MX does not need them.
    rule = PLAID_ERROR_CODES["INVALID_API_KEYS"]
    plaid, mx = ClassifiedProvider("plaid", "INVALID_API_KEYS", rule), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")

    assert outcome.success and outcome.provider == "mx" and outcome.failover_used
    assert outcome.attempts[0].failover_helps


@pytest.mark.parametrize("helps", [True, False])
async def test_failover_follows_the_errors_own_word_whatever_its_type(helps: bool) -> None:
    rule = ErrorRule("provider_down", True, failover_helps=helps)
    plaid, mx = ClassifiedProvider("plaid", "X", rule), FakeProvider("mx")
    orch = Orchestrator({"plaid": plaid, "mx": mx}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid"), link("mx")], "US")

    assert mx.calls == (1 if helps else 0)
    assert outcome.success is helps


class RestartingProvider(PagedProvider):
    """Its second page fails with an error whose row says the walk must start over."""

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        if cursor == "c1":
            self.cursors.append(cursor)
            rule = ErrorRule("unknown", True, failover_helps=False, restarts_pagination=True)
            raise rule.error("plaid", "ANY_CODE_THE_ROW_FLAGS", "the item changed")
        return await super().sync_transactions(
            link, cursor=cursor, count=count, timeout_s=timeout_s
        )


async def test_a_row_flagged_restarts_pagination_voids_the_pages_walked_before_it() -> None:
    plaid = RestartingProvider(pages=5)
    orch = Orchestrator({"plaid": plaid}, hierarchy=HIERARCHY)

    outcome = await orch.execute_with_failover(SYNC, [link("plaid")], "US")

    assert plaid.cursors == [None, "c1"]
    assert not outcome.success and outcome.data is None
    assert outcome.error is not None and outcome.error.retryable
