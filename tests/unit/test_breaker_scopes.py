"""Breakers where the failures are: per provider and bank, provider-wide, and held by hand."""

from __future__ import annotations

from uuid import UUID

import msgspec
import pytest

from events.breaker import BreakerForced, BreakerOpened, BreakerReleased, ProviderStatusReport
from events.connection import ConnectionAttempted
from services.resilience.board import BreakerBoard
from services.resilience.domain import breaker_id_for
from services.resilience.policy import PolicyBook
from tests.unit.test_breakers import Clock, MemoryRecorder

pytestmark = pytest.mark.unit


def attempt(
    clock: Clock,
    n: int,
    *,
    ok: bool = False,
    provider: str = "plaid",
    institution: str | None = "gingham_savings",
    blame: str | None = "institution",
    error_type: str = "provider_down",
    code: str = "INSTITUTION_DOWN",
) -> ConnectionAttempted:
    return ConnectionAttempted(
        originator_id=UUID(int=n),
        originator_version=1,
        timestamp=clock(),
        command_id=f"c{n}",
        op="sync.transactions",
        provider=provider,
        region="US",
        attempt=1,
        failover=False,
        outcome="success" if ok else "failure",
        response_time_ms=20.0,
        error_code=None if ok else code,
        error_type=None if ok else error_type,
        institution_id=institution,
        blame=None if ok else blame,  # type: ignore[arg-type]
    )


async def feed(board: BreakerBoard, clock: Clock, events: list[ConnectionAttempted]) -> None:
    for event in events:
        await board.observe(event)
        clock.advance(1)


def board() -> tuple[BreakerBoard, MemoryRecorder, Clock]:
    recorder, clock = MemoryRecorder(), Clock()
    return BreakerBoard(recorder, PolicyBook(), clock), recorder, clock


async def test_one_bank_down_opens_its_breaker_and_leaves_the_others_and_the_provider() -> None:
    b, recorder, clock = board()
    await feed(b, clock, [attempt(clock, n) for n in range(5)])
    assert b.status("plaid", "US", "gingham_savings") == "open"
    assert b.status("plaid", "US") == "closed"
    assert not (await b.permit("plaid", "US", "x", institution_id="gingham_savings")).allowed
    assert (await b.permit("plaid", "US", "y", institution_id="houndstooth_bank")).allowed
    assert (await b.permit("plaid", "US", "z")).allowed
    (stream,) = recorder.streams
    assert stream == breaker_id_for("plaid", "US", "gingham_savings")


async def test_the_providers_own_failures_open_the_provider_wide_breaker_for_every_bank() -> None:
    b, _, clock = board()
    await feed(
        b,
        clock,
        [attempt(clock, n, blame="provider", code="INTERNAL_SERVER_ERROR") for n in range(5)],
    )
    assert b.status("plaid", "US") == "open"
    assert b.status("plaid", "US", "gingham_savings") == "closed"
    refused = await b.permit("plaid", "US", "x", institution_id="houndstooth_bank")
    assert not refused.allowed and "open until" in refused.reason


async def test_bank_failures_that_span_three_banks_open_the_provider_wide_breaker() -> None:
    b, _, clock = board()
    banks = ["gingham_savings", "houndstooth_bank", "tattersall_credit_union"]
    await feed(b, clock, [attempt(clock, n, institution=banks[n % 2]) for n in range(4)])
    assert b.status("plaid", "US") == "closed"  # two banks: their own trouble
    await feed(b, clock, [attempt(clock, 4, institution=banks[2])])
    assert b.status("plaid", "US") == "open"


async def test_a_callers_bad_cursor_does_not_count_against_mx() -> None:
    # MX's invalid cursor: the command's mistake. Its type is no help here (a
    # table row may say "unknown"), the blame is: the caller's.
    b, recorder, clock = board()
    bad_cursor = [
        attempt(
            clock, n, provider="mx", blame="caller", error_type="unknown", code="invalid_cursor"
        )
        for n in range(30)
    ]
    await feed(b, clock, bad_cursor)
    assert b.status("mx", "US") == "closed"
    assert b.status("mx", "US", "gingham_savings") == "closed"
    assert recorder.recorded() == []


async def test_a_connection_without_a_bank_uses_only_the_provider_wide_breaker() -> None:
    b, recorder, clock = board()
    calls = [attempt(clock, n, institution=None, blame="provider") for n in range(5)]
    await feed(b, clock, calls)
    assert b.status("plaid", "US") == "open"
    assert set(recorder.streams) == {breaker_id_for("plaid", "US")}


async def test_a_breaker_forced_open_refuses_until_its_expiry_then_closes() -> None:
    b, recorder, clock = board()
    await b.force(
        "plaid",
        "US",
        "gingham_savings",
        state="open",
        duration_s=600,
        actor="ops@example",
        reason="bank announced an outage",
        command_id="force-1",
    )
    refused = await b.permit("plaid", "US", "c", institution_id="gingham_savings")
    assert not refused.allowed
    assert "held by an operator" in refused.reason and "bank announced an outage" in refused.reason
    # The hold may be released early: what it holds asks again every open timeout.
    assert "open until 10:10:00Z" in refused.reason and refused.retry_after_s == pytest.approx(60)
    clock.advance(599)
    await b.tick()
    assert b.status("plaid", "US", "gingham_savings") == "open"  # no half-open while held
    clock.advance(1)
    await b.tick()
    assert b.status("plaid", "US", "gingham_savings") == "closed"
    forced, released = recorder.streams[breaker_id_for("plaid", "US", "gingham_savings")]
    assert isinstance(forced, BreakerForced) and forced.actor == "ops@example"
    assert isinstance(released, BreakerReleased) and "expired" in released.reason


async def test_a_breaker_forced_closed_lets_calls_through_whatever_fails() -> None:
    b, recorder, clock = board()
    await b.force(
        "plaid",
        "US",
        None,
        state="closed",
        duration_s=300,
        actor="ops",
        reason="the provider's status page is wrong",
        command_id="force-2",
    )
    await feed(b, clock, [attempt(clock, n, blame="provider") for n in range(20)])
    assert b.status("plaid", "US") == "closed"
    assert (await b.permit("plaid", "US", "c")).allowed
    assert not any(
        isinstance(e, BreakerOpened) for e in recorder.streams[breaker_id_for("plaid", "US")]
    )


async def test_release_ends_a_hold_and_a_resent_force_records_nothing() -> None:
    b, recorder, _ = board()
    args = {"state": "open", "duration_s": 60.0, "actor": "ops", "reason": "r"}
    await b.force("plaid", "US", None, command_id="f", **args)  # type: ignore[arg-type]
    await b.force("plaid", "US", None, command_id="f", **args)  # type: ignore[arg-type]
    await b.release("plaid", "US", None, actor="ops", reason="over", command_id="r")
    assert b.status("plaid", "US") == "closed"
    assert recorder.recorded() == ["BreakerForced", "BreakerReleased"]


async def test_the_providers_status_opens_a_banks_breaker_before_any_call_fails() -> None:
    b, recorder, _ = board()
    reports = [
        ProviderStatusReport(
            product="item_logins", status="DOWN", success=0.1, error_institution=0.9
        ),
        ProviderStatusReport(product="transactions_updates", status="HEALTHY", success=0.98),
    ]
    assert await b.provider_status("plaid", "US", "gingham_savings", reports, "institution")
    assert b.status("plaid", "US", "gingham_savings") == "open"
    ((opened,),) = recorder.streams.values()
    assert isinstance(opened, BreakerOpened)
    assert opened.source == "provider_status" and opened.blame == "institution"
    assert opened.calls == [] and "item_logins DOWN" in opened.reason
    # Reported again while open: nothing more to record.
    assert not await b.provider_status("plaid", "US", "gingham_savings", reports, "institution")


async def test_a_banks_probe_failing_for_plaids_own_reason_only_frees_its_slot() -> None:
    b, recorder, clock = board()
    await feed(b, clock, [attempt(clock, n) for n in range(5)])  # the bank's breaker opens
    clock.advance(61)
    assert (await b.permit("plaid", "US", "c100", institution_id="gingham_savings")).probe
    # Plaid's own 5xx on the probe: the provider-wide breaker's business, not the bank's.
    await b.observe(attempt(clock, 100, blame="provider", code="INTERNAL_SERVER_ERROR"))
    assert b.status("plaid", "US", "gingham_savings") == "half_open"
    assert (await b.permit("plaid", "US", "c101", institution_id="gingham_savings")).probe
    assert recorder.recorded().count("BreakerOpened") == 1


async def test_a_bank_down_on_its_own_side_at_plaid_makes_mx_wait_for_that_bank_only() -> None:
    b, recorder, clock = board()
    await feed(b, clock, [attempt(clock, n) for n in range(5)])  # INSTITUTION_DOWN at Plaid
    refused = await b.permit("mx", "US", "m1", institution_id="gingham_savings")
    assert not refused.allowed and "down on its own side" in refused.reason
    assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 60
    # Other banks at MX, and MX without a bank, are none of this outage's business.
    assert (await b.permit("mx", "US", "m2", institution_id="houndstooth_bank")).allowed
    assert (await b.permit("mx", "US", "m3")).allowed
    assert b.status("mx", "US", "gingham_savings") == "closed"  # MX's own breaker untouched
    assert not any(stream == breaker_id_for("mx", "US", "gingham_savings") for stream in
                   recorder.streams)  # fmt: skip
    # Once Plaid's breaker half-opens, MX's own bank breaker judges MX's calls again.
    clock.advance(61)
    await b.tick()
    assert (await b.permit("mx", "US", "m4", institution_id="gingham_savings")).allowed


async def test_the_status_blaming_the_bank_spreads_the_wait_and_blaming_plaid_does_not() -> None:
    reports = [ProviderStatusReport(product="item_logins", status="DOWN", success=0.1)]
    bank, _, _ = board()
    await bank.provider_status("plaid", "US", "gingham_savings", reports, "institution")
    assert not (await bank.permit("finicity", "US", "f1", institution_id="gingham_savings")).allowed
    plaid, _, _ = board()
    await plaid.provider_status("plaid", "US", "gingham_savings", reports, "provider")
    assert plaid.status("plaid", "US", "gingham_savings") == "open"
    assert (await plaid.permit("finicity", "US", "f2", institution_id="gingham_savings")).allowed


async def test_an_operators_hold_at_one_provider_routes_around_it_instead_of_spreading() -> None:
    b, _, _ = board()
    await b.force(
        "plaid", "US", "gingham_savings", state="open", duration_s=600, actor="ops",
        reason="Plaid's connector to this bank is broken", command_id="hold",
    )  # fmt: skip
    assert not (await b.permit("plaid", "US", "p", institution_id="gingham_savings")).allowed
    assert (await b.permit("mx", "US", "m", institution_id="gingham_savings")).allowed


async def test_a_failed_probe_reopening_a_banks_breaker_does_not_hold_other_providers_again() -> (
    None
):
    # Plaid's own connector to a bank can answer INSTITUTION_DOWN for hours: the
    # spread to MX lasts one open time, not every round of Plaid's probes.
    b, _, clock = board()
    await feed(b, clock, [attempt(clock, n) for n in range(5)])
    assert not (await b.permit("mx", "US", "m1", institution_id="gingham_savings")).allowed
    clock.advance(61)
    await b.tick()
    probe = await b.permit("plaid", "US", "probe-1", institution_id="gingham_savings")
    assert probe.allowed and probe.probe
    failed = attempt(clock, 99)
    await b.observe(msgspec.structs.replace(failed, command_id="probe-1"))
    assert b.status("plaid", "US", "gingham_savings") == "open"  # re-opened by its probe
    assert (await b.permit("mx", "US", "m2", institution_id="gingham_savings")).allowed


async def test_a_redelivered_release_does_not_close_a_breaker_that_opened_again() -> None:
    b, recorder, clock = board()
    args = {"state": "open", "duration_s": 60.0, "actor": "ops", "reason": "r"}
    await b.force("plaid", "US", None, command_id="f", **args)  # type: ignore[arg-type]
    await b.release("plaid", "US", None, actor="ops", reason="over", command_id="r")
    await feed(b, clock, [attempt(clock, n, blame="provider") for n in range(5)])
    assert b.status("plaid", "US") == "open"
    await b.release("plaid", "US", None, actor="ops", reason="over", command_id="r")
    assert b.status("plaid", "US") == "open"
    assert recorder.recorded().count("BreakerReleased") == 1


async def test_a_hold_resent_after_a_later_one_records_nothing_and_says_so() -> None:
    b, recorder, _ = board()
    args = {"duration_s": 60.0, "actor": "ops", "reason": "r", "space_id": "ops"}
    _, first = await b.force("plaid", "US", None, state="open", command_id="f1", **args)  # type: ignore[arg-type]
    await b.force("plaid", "US", None, state="closed", command_id="f2", **args)  # type: ignore[arg-type]
    breaker, again = await b.force("plaid", "US", None, state="open", command_id="f1", **args)  # type: ignore[arg-type]

    assert first and not again and breaker.applied("ops", "f1")
    assert breaker.forced == "closed"  # the later hold stands
    assert recorder.recorded() == ["BreakerForced", "BreakerForced"]


async def test_a_release_resent_after_a_later_hold_leaves_the_hold() -> None:
    b, recorder, _ = board()
    args = {"state": "open", "duration_s": 60.0, "actor": "ops", "reason": "r", "space_id": "ops"}
    await b.force("plaid", "US", None, command_id="f1", **args)  # type: ignore[arg-type]
    await b.release("plaid", "US", None, actor="ops", reason="o", command_id="r1", space_id="ops")
    await b.force("plaid", "US", None, command_id="f2", **args)  # type: ignore[arg-type]
    breaker, recorded = await b.release(
        "plaid", "US", None, actor="ops", reason="o", command_id="r1", space_id="ops"
    )

    assert not recorded and breaker.forced == "open"
    assert recorder.recorded() == ["BreakerForced", "BreakerReleased", "BreakerForced"]


async def test_the_same_hold_command_id_from_another_space_is_another_hold() -> None:
    b, recorder, _ = board()
    args = {"state": "open", "duration_s": 60.0, "actor": "ops", "reason": "r", "command_id": "f"}
    await b.force("plaid", "US", None, space_id="ops", **args)  # type: ignore[arg-type]
    _, recorded = await b.force("plaid", "US", None, space_id="ops-eu", **args)  # type: ignore[arg-type]

    assert recorded
    assert recorder.recorded() == ["BreakerForced", "BreakerForced"]
