"""Providers' webhooks about linked items, decided on the connection: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events.connection import ConsentExpiring, LoginRepaired, ReauthRequired
from services.connections.domain import ConnectionState, decide_register, fold
from services.connections.signals import ItemSignal, SignalKind, decide_signal
from services.item_signals import signal_of
from services.providers.base import WebhookEvent
from services.providers.plaid.webhooks import normalise
from tests.unit.test_connection_domain import register, registered

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=7)


def signal(
    kind: SignalKind,
    *,
    item_id: str = "item-plaid",
    code: str = "PENDING_EXPIRATION",
    expires_at: datetime | None = EXPIRES,
    reference: str = "webhook:plaid:1",
    issued_at: datetime | None = None,
) -> ItemSignal:
    return ItemSignal(
        provider="plaid",
        item_id=item_id,
        kind=kind,
        code=code,
        reference=reference,
        expires_at=expires_at,
        issued_at=issued_at,
    )


def apply(state: ConnectionState, sig: ItemSignal) -> tuple[ConnectionState, list[type]]:
    events = decide_signal(state, sig, now=NOW)
    folded = fold(state, events)
    assert folded is not None
    return folded, [type(e) for e in events]


def test_a_consent_notice_is_recorded_once_however_often_it_is_delivered() -> None:
    state, kinds = apply(registered("plaid"), signal("consent_expiring"))
    assert kinds == [ConsentExpiring]
    assert state.consent_expiring["plaid"].expires_at == EXPIRES
    state, kinds = apply(state, signal("consent_expiring", reference="webhook:plaid:again"))
    assert kinds == []


def test_a_new_notice_for_the_same_link_is_recorded_and_a_relink_clears_the_old_one() -> None:
    state, _ = apply(registered("plaid"), signal("consent_expiring"))
    later = signal("consent_expiring", expires_at=EXPIRES + timedelta(days=90))
    state, kinds = apply(state, later)
    assert kinds == [ConsentExpiring]
    # Linked again (update mode or a new item): the person consented afresh.
    relinked = fold(state, decide_register(state, register("relink"), now=NOW, trace={}))
    assert relinked is not None and "plaid" not in relinked.consent_expiring


def test_a_lost_login_sets_the_link_aside_and_its_repair_brings_it_back() -> None:
    state, kinds = apply(
        registered("plaid", "mx"), signal("login_required", code="ITEM_LOGIN_REQUIRED")
    )
    assert kinds == [ReauthRequired]
    assert state.usable_links(NOW) == ["mx"]
    state, kinds = apply(state, signal("login_required", code="ITEM_LOGIN_REQUIRED"))
    assert kinds == []  # already set aside
    state, kinds = apply(state, signal("login_repaired", code="LOGIN_REPAIRED"))
    assert kinds == [LoginRepaired]
    assert sorted(state.usable_links(NOW)) == ["mx", "plaid"]
    state, kinds = apply(state, signal("login_repaired", code="LOGIN_REPAIRED"))
    assert kinds == []  # nothing left to repair


def test_a_login_required_signed_before_the_last_repair_is_stale_and_changes_nothing() -> None:
    lost = signal(
        "login_required", code="ITEM_LOGIN_REQUIRED", issued_at=NOW - timedelta(minutes=2)
    )
    state, kinds = apply(registered("plaid", "mx"), lost)
    assert kinds == [ReauthRequired]
    repaired, kinds = apply(state, signal("login_repaired", code="LOGIN_REPAIRED"))
    assert kinds == [LoginRepaired]  # recorded at NOW

    # The provider resends the old "login required" late: the repair stands.
    state, kinds = apply(repaired, lost)
    assert kinds == []
    assert sorted(state.usable_links(NOW)) == ["mx", "plaid"]


def test_a_login_required_signed_after_the_repair_or_unsigned_sets_the_link_aside() -> None:
    state, _ = apply(
        registered("plaid", "mx"), signal("login_required", code="ITEM_LOGIN_REQUIRED")
    )
    repaired, _ = apply(state, signal("login_repaired", code="LOGIN_REPAIRED"))
    # Whole seconds: one signed in the repair's own second may have come after it.
    for issued_at in (NOW + timedelta(seconds=1), NOW.replace(microsecond=0), None):
        lost = signal("login_required", code="ITEM_LOGIN_REQUIRED", issued_at=issued_at)
        state, kinds = apply(repaired, lost)
        assert kinds == [ReauthRequired], issued_at
        assert state.usable_links(NOW) == ["mx"]


def test_a_repair_of_an_item_replaced_says_nothing_about_the_new_items_login() -> None:
    state, _ = apply(registered("plaid"), signal("login_required", code="ITEM_LOGIN_REQUIRED"))
    repaired, _ = apply(state, signal("login_repaired", code="LOGIN_REPAIRED"))
    new_item = msgspec.structs.replace(register("relink"), item_id="item-2")
    relinked = fold(repaired, decide_register(repaired, new_item, now=NOW, trace={}))
    assert relinked is not None and relinked.links["plaid"].item_id == "item-2"
    lost = signal(
        "login_required",
        item_id="item-2",
        code="ITEM_LOGIN_REQUIRED",
        issued_at=NOW - timedelta(minutes=2),
    )
    _, kinds = apply(relinked, lost)
    assert kinds == [ReauthRequired]


def test_a_signal_about_another_item_changes_nothing() -> None:
    state, _ = apply(registered("plaid"), signal("login_required", code="ITEM_LOGIN_REQUIRED"))
    for kind in ("login_repaired", "login_required", "consent_expiring"):
        assert decide_signal(state, signal(kind, item_id="item-B"), now=NOW) == []
    assert decide_signal(registered("mx"), signal("consent_expiring"), now=NOW) == []


def test_a_verified_webhook_becomes_a_signal_named_after_its_body() -> None:
    body = msgspec.json.encode(
        {
            "webhook_type": "ITEM",
            "webhook_code": "PENDING_DISCONNECT",
            "item_id": "item-plaid",
            "reason": "INSTITUTION_TOKEN_EXPIRATION",
            "environment": "sandbox",
        }
    )
    first, again = (
        signal_of(normalise("plaid", body), body),
        signal_of(normalise("plaid", body), body),
    )
    assert first is not None and first == again
    assert (first.kind, first.code, first.reason) == (
        "consent_expiring",
        "PENDING_DISCONNECT",
        "INSTITUTION_TOKEN_EXPIRATION",
    )
    assert first.reference.startswith("webhook:plaid:")


@pytest.mark.parametrize(
    "event",
    [
        WebhookEvent(provider="plaid", kind="transactions_updated", item_id="item-plaid"),
        WebhookEvent(provider="plaid", kind="login_required", item_id=None),
        WebhookEvent(provider="plaid", kind="public_token", public_token="public-1"),
    ],
)
def test_webhooks_that_are_no_item_signal_are_not_one(event: WebhookEvent) -> None:
    assert signal_of(event, b"{}") is None
