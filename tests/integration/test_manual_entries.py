"""Manual accounts end to end: entries recorded over the HTTP API, synced into the feed like
any provider's, and still there, and still followed, after syncyard restarts."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import asyncpg
import pytest

from events.commands import RegisterConnection
from infra.config import Settings
from infra.http.manual import MAX_ITEMS
from infra.manual_entries import LedgerLimits, PostgresManualEntries
from tests.integration.feed_helpers import fold, read_over_rpc, sync_to_the_end
from tests.support.harness import SPACE, Client, auth, client, product_settings, running_syncyard

pytestmark = pytest.mark.integration

ACCOUNT, LEDGER = "cash-1", "ledger-cash-1"
ROUTE = f"/v1/accounts/{ACCOUNT}/manual-entries/{LEDGER}"


def entry(entry_id: str, amount: float, name: str, day: int = 3) -> dict[str, Any]:
    return {"entry_id": entry_id, "account_id": "wallet", "amount": amount,
            "date": f"2026-11-{day:02d}", "name": name}  # fmt: skip


async def record(
    http: aiohttp.ClientSession, api: str, body: dict[str, Any], *, caller: str = "operator-1"
) -> aiohttp.ClientResponse:
    async with http.post(
        f"{api}{ROUTE}", params={"space_id": SPACE}, json=body, headers=auth(caller)
    ) as response:
        await response.read()
        return response


async def recorded(http: aiohttp.ClientSession, api: str, body: dict[str, Any]) -> Any:
    async with http.post(
        f"{api}{ROUTE}", params={"space_id": SPACE}, json=body, headers=auth("operator-1")
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def feed_as_entries(entries: list[dict[str, Any]]) -> dict[str, tuple[Decimal, str]]:
    """The folded feed: each live transaction's manual id, amount and name."""
    return {
        e["provider_transaction_id"]: (
            Decimal(e["transaction"]["amount"]),
            e["transaction"]["name"],
        )
        for e in fold(entries).values()
    }


class Servers(NamedTuple):
    settings: Settings
    nats_url: str
    database_url: str


@pytest.fixture
def servers(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None, tmp_path: Path
) -> Servers:
    """What a syncyard of this test starts on, as many times as it restarts."""
    return Servers(product_settings(sandbox, tmp_path), nats_url, database_url)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_manual_entries_are_synced_into_the_feed_and_survive_a_restart(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    settings, nats_url, database_url = servers
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
    ):
        api = str(runtime.http_url)
        first = await recorded(http, api, {
            "accounts": [{"account_id": "wallet", "name": "Cash wallet", "current": 120.0}],
            "entries": [entry("e1", 4.5, "Coffee"), entry("e2", 12.0, "Lunch")],
        })  # fmt: skip
        assert first == {"ledger_id": LEDGER, "head": 2, "changes": 2}
        # A retried request records nothing new.
        again = await recorded(http, api, {"entries": [entry("e1", 4.5, "Coffee")]})
        assert again["changes"] == 0
        await register_manual(upstream)
        await sync_to_the_end(upstream, ACCOUNT, "manual-1")
        assert feed_as_entries(await read_over_rpc(upstream.nc, ACCOUNT)) == {
            "e1": (Decimal("4.5"), "Coffee"),
            "e2": (Decimal("12"), "Lunch"),
        }

    # Restarted: the entries are read back from PostgreSQL, and the link's cursor goes on.
    fresh = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        changes, head = await PostgresManualEntries(fresh).changes(LEDGER, 0, 100)
    finally:
        await fresh.close()
    assert head == 2 and [c.entry.entry_id for c in changes] == ["e1", "e2"]
    async with (
        running_syncyard(settings, nats_url, database_url) as runtime,
        client(nats_url) as upstream,
    ):
        api = str(runtime.http_url)
        edit = await recorded(http, api, {
            "entries": [entry("e2", 13.25, "Lunch and tip"), entry("e3", 2.0, "Bus")],
            "deleted": ["e1"],
        })  # fmt: skip
        assert edit == {"ledger_id": LEDGER, "head": 5, "changes": 3}
        after = await sync_to_the_end(upstream, ACCOUNT, "manual-2")
        assert {r.provider for r in after} == {"manual"}
        delivered = [e for r in after if r.data for e in r.data["entries"]]
        assert sorted(e["change"] for e in delivered) == ["added", "modified", "removed"]
        assert feed_as_entries(await read_over_rpc(upstream.nc, ACCOUNT)) == {
            "e2": (Decimal("13.25"), "Lunch and tip"),
            "e3": (Decimal("2"), "Bus"),
        }


async def register_manual(upstream: Client) -> None:
    result = await upstream.send(
        RegisterConnection(
            command_id="reg-manual",
            space_id=SPACE,
            account_id=ACCOUNT,
            region="MANUAL",
            provider="manual",
            item_id=LEDGER,
            access_token=LEDGER,
        )
    )
    assert result.success, result.error


async def test_only_operators_of_the_account_s_space_record_and_a_ledger_stays_its_account_s(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    body = {"entries": [entry("e1", 1.0, "Tea")]}
    async with running_syncyard(*servers) as rt:
        api = str(rt.http_url)
        assert (await record(http, api, body, caller="viewer-1")).status == 403
        assert (await record(http, api, body, caller="operator-2")).status == 403
        assert (await record(http, api, body)).status == 200
        # The same ledger id under another account of the space: not this account's.
        async with http.post(
            f"{api}/v1/accounts/someone-else/manual-entries/{LEDGER}",
            params={"space_id": SPACE},
            json=body,
            headers=auth("operator-1"),
        ) as response:
            assert response.status == 404
        assert (await record(http, api, {"entries": [{"entry_id": "x"}]})).status == 400


async def test_a_write_past_a_ledger_s_limit_or_a_request_s_is_refused_and_says_so(
    servers: Servers, http: aiohttp.ClientSession
) -> None:
    async with running_syncyard(*servers) as rt:
        api = str(rt.http_url)
        assert rt.manual_entries is not None
        rt.manual_entries.limits = LedgerLimits(entries=2)
        assert (await recorded(http, api, {"entries": [entry("e1", 1.0, "Tea")]}))["head"] == 1

        full = {"entries": [entry("e1", 1.5, "Tea and cake"), *(entry(f"e{n}", 2.0, "Bun")
                                                                for n in (2, 3))]}  # fmt: skip
        async with http.post(
            f"{api}{ROUTE}", params={"space_id": SPACE}, json=full, headers=auth("operator-1")
        ) as response:
            assert response.status == 409
            error = (await response.json())["error"]
        assert error["code"] == "ledger_full"
        assert "would hold 3 entries, over its limit of 2" in error["message"]
        assert "nothing of this write was recorded" in error["message"]
        # Nothing half-applied: the edit of e1 in the refused write is not there either.
        changes, head = await rt.manual_entries.changes(LEDGER, 0, 10)
        assert head == 1 and [c.entry.name for c in changes] == ["Tea"]

        # A request's own bounds: items per list, and the body's size.
        many = {"deleted": [f"x{n}" for n in range(MAX_ITEMS + 1)]}
        too_many = await record(http, api, many)
        assert too_many.status == 400
        huge = json.dumps({"entries": [entry("e9", 1.0, "x" * (1024 * 1024))]}).encode()
        async with http.post(
            f"{api}{ROUTE}",
            params={"space_id": SPACE},
            data=io.BytesIO(huge),
            headers={**auth("operator-1"), "Content-Type": "application/json"},
        ) as response:
            assert response.status == 413
        assert (await rt.manual_entries.changes(LEDGER, 0, 10))[1] == 1
