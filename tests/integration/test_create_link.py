"""link.create fails over freely along the institution's providers."""

from __future__ import annotations

import pytest

from events.commands import CreateLink
from infra.bootstrap import Runtime
from tests.support.harness import Client, inject_fault, stored_events

pytestmark = pytest.mark.integration


def create(command_id: str, account: str) -> CreateLink:
    return CreateLink(command_id=command_id, space_id="space-1", account_id=account)


async def test_a_link_token_comes_from_the_first_provider_in_the_regions_order(
    syncyard: Runtime, upstream: Client, database_url: str
) -> None:
    result = await upstream.send(create("link-1", "acct-new"))
    assert result.success and result.provider == "plaid" and not result.failover_used
    assert result.data is not None and result.data["token"].startswith("link-sandbox-")
    topics = [t for _, t, _ in await stored_events(database_url)]
    assert "ConnectionRegistered" in topics and topics[-1] == "SyncCompleted"


async def test_when_the_primary_cannot_create_a_link_the_next_provider_does(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/link/token/create",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",
    )
    result = await upstream.send(create("link-2", "acct-new-2"))
    assert result.success and result.provider == "mx" and result.failover_used
    assert result.attempts == 2
    assert result.data is not None and result.data["url"]
