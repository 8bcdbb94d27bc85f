"""Which verified webhooks complete which saga: only those naming its link session."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from events.saga import SagaStarted
from sagas.commands import webhook_completion
from sagas.state import SagaState, fold
from services.connections.state import pair_key
from services.providers.base import ProviderAdapter, WebhookEvent

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSON = pair_key("s", "a")


class Owners:
    """An adapter's `belongs_to` only: which public tokens are whose (None: not ids)."""

    def __init__(self, owners: dict[str, str] | None) -> None:
        self.owners = owners
        self.asked: list[tuple[str, str]] = []

    async def belongs_to(
        self, public_token: str, *, user_ref: str, timeout_s: float
    ) -> bool | None:
        self.asked.append((public_token, user_ref))
        if self.owners is None:
            return None
        return self.owners.get(public_token) == user_ref


def saga(kind: str) -> SagaState:
    event = SagaStarted(
        originator_id=uuid.UUID(int=7),
        originator_version=1,
        timestamp=T0,
        kind="link" if kind == "link" else "reconnect",
        command_id="link-1",
        space_id="s",
        account_id="a",
        connection_id=uuid.UUID(int=9),
        params={"provider": "mx", "item_id": "MBR-mine"},
    )
    state = fold(None, [event])
    assert state is not None
    return state


async def completion(
    kind: str, event: WebhookEvent, owners: Owners, created: dict[str, Any] | None = None
) -> tuple[str | None, str | None]:
    created = created or {
        "provider": event.provider,
        "link_token": "lt-mine",
        "item_id": "MBR-mine",
    }
    adapter = cast("ProviderAdapter", owners)
    return await webhook_completion(saga(kind), created, event, adapter, timeout_s=1.0)


def finished(provider: str, token: str, **fields: Any) -> WebhookEvent:
    return WebhookEvent(provider=provider, kind="public_token", public_token=token, **fields)


async def test_an_mx_member_webhook_completes_the_saga_of_the_person_whose_user_it_names() -> None:
    owners = Owners({"USR-mine:MBR-1": PERSON, "USR-theirs:MBR-2": "someone/else"})

    assert await completion("link", finished("mx", "USR-mine:MBR-1"), owners) == (
        "USR-mine:MBR-1",
        None,
    )
    assert await completion("link", finished("mx", "USR-theirs:MBR-2"), owners) == (
        None,
        "not_this_link_session",
    )
    assert owners.asked[-1] == ("USR-theirs:MBR-2", PERSON)


async def test_a_webhook_naming_no_link_session_completes_no_link_saga() -> None:
    # Plaid's tokens are not ids: without the session's link token nothing says whose.
    plaid = Owners(None)

    assert await completion("link", finished("plaid", "public-x"), plaid) == (
        None,
        "not_this_link_session",
    )
    assert await completion("link", finished("plaid", "public-x", link_token="lt-mine"), plaid) == (
        "public-x",
        None,
    )
    assert await completion(
        "link", finished("plaid", "public-x", link_token="lt-other"), plaid
    ) == (
        None,
        "link_token_mismatch",
    )
    assert plaid.asked == [("public-x", PERSON)]


async def test_a_reconnect_completes_only_by_its_own_session_or_item() -> None:
    repaired = {"webhook_code": "LOGIN_REPAIRED"}
    owners = Owners(None)

    def item(item_id: str | None) -> WebhookEvent:
        return WebhookEvent(provider="plaid", kind="other", item_id=item_id, raw=repaired)

    assert await completion("reconnect", item("MBR-mine"), owners) == (None, None)
    assert await completion("reconnect", item("MBR-theirs"), owners) == (
        None,
        "not_this_link_session",
    )
    assert await completion("reconnect", item(None), owners) == (None, "not_this_link_session")
    session = WebhookEvent(provider="plaid", kind="public_token", link_token="lt-mine")
    assert await completion("reconnect", session, owners) == (None, None)
