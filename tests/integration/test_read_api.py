"""The read-model HTTP API over a real database: each route's JSON, its description, its 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from events.asyncapi import asyncapi_document
from events.commands import COMMAND_TYPES
from events.subjects import command_subject, dlq_subject, result_subject, rpc_subject
from infra.http.api import ROUTES
from infra.http.openapi import RESPONSE_TYPES
from infra.http.responses import ApiError
from services.resilience.domain import breaker_id_for
from tests.integration.read_api_server import read_api
from tests.integration.read_model_events import T0
from tests.support.harness import API_TOKENS, AUTH

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    async with read_api(database_url, API_TOKENS) as url:
        yield url


async def get_raw(url: str, status: int = 200) -> bytes:
    async with aiohttp.ClientSession(headers=AUTH) as http, http.get(url) as resp:
        body = await resp.read()
        assert resp.status == status, body
        return body


async def get(url: str, status: int = 200) -> Any:
    return msgspec.json.decode(await get_raw(url, status))


async def test_every_read_model_route_answers_with_its_numbers(api: str) -> None:
    health = await get(f"{api}/v1/providers/health?region=US&provider=plaid")
    (plaid,) = health["providers"]
    assert plaid["health_score"] == 65 and plaid["window_5m"]["successes"] == 2
    earlier = await get(f"{api}/v1/providers/health?provider=plaid&as_of=2026-03-02T11:58:00Z")
    assert earlier["providers"][0]["window_5m"]["successes"] == 1

    status = await get(f"{api}/v1/connections/acct-a/status?space_id=space-1")
    assert status["connections"][0]["consecutive_failures"] == 2
    history = await get(f"{api}/v1/connections/acct-a/history?limit=2&space_id=space-1")
    assert [a["failover_from"] for a in history["attempts"]] == ["plaid", None]
    assert [a["failover_to"] for a in history["attempts"]] == [None, "mx"]
    syncs = await get(f"{api}/v1/connections/acct-a/syncs?space_id=space-1")
    assert [s["outcome"] for s in syncs["syncs"]] == ["deferred", "failure", "success"]
    reliability = await get(f"{api}/v1/connections/acct-a/reliability?days=1&space_id=space-1")
    assert reliability["connections"][0]["total"] == 3

    providers = await get(f"{api}/v1/providers/reliability?days=1")
    plaid_rel = next(p for p in providers["providers"] if p["provider"] == "plaid")
    assert plaid_rel["calls"] == 6 and plaid_rel["estimated_cost"] == pytest.approx(0.30)
    rates = await get(f"{api}/v1/providers/failover-rates?region=US")
    assert sum(h["failovers"] for h in rates["hours"]) == 1

    overview = await get(f"{api}/v1/metrics/overview?days=1")
    assert overview["connections"]["total"] == 2 and overview["syncs"]["total"] == 3

    admin = await get(f"{api}/v1/admin/stats")
    by_provider = {p["provider"]: p for p in admin["providers"]}
    assert by_provider["mx"]["breaker"]["state"] == "open"
    assert by_provider["plaid"]["success_rate_24h"] == pytest.approx(3 / 6)
    assert by_provider["plaid"]["last_error"]["code"] == "PROVIDER_DOWN"
    lag = {p["projection"]: p for p in admin["projections"]}
    assert lag["sync_log"]["events_behind"] == 2 and lag["connection_status"]["events_behind"] == 42


async def test_the_served_openapi_description_covers_every_route(api: str) -> None:
    document = await get(f"{api}/v1/openapi.json")
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {route.path for route in ROUTES}
    assert not any(
        "x-undocumented" in op for ops in document["paths"].values() for op in ops.values()
    )


async def test_every_response_decodes_strictly_into_the_struct_its_schema_is_generated_from(
    api: str,
) -> None:
    document = await get(f"{api}/v1/openapi.json")
    filled = {"account_id": "acct-a"}
    for route in ROUTES:
        struct = RESPONSE_TYPES.get(route.path)
        if struct is None:
            continue  # the two descriptions: documents of their own standards
        query = "?space_id=space-1" if "{account_id}" in route.path else ""
        raw = await get_raw(f"{api}{route.path.format(**filled)}{query}")
        decoded = msgspec.json.decode(raw, type=struct, strict=True)
        # Encoded back, the struct gives the same JSON: no key served that it leaves out.
        served = msgspec.json.decode(raw)
        assert msgspec.json.decode(msgspec.json.encode(decoded)) == served, route.path
        assert [key for key, value in served.items() if value == []] == [], route.path
        operation = document["paths"][route.path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{struct.__name__}"}, route.path
        assert struct.__name__ in document["components"]["schemas"]
    for path, status in (
        ("/v1/sagas?status=stuck", 400),
        ("/v1/connections/nobody/status?space_id=space-1", 404),
    ):
        msgspec.json.decode(await get_raw(f"{api}{path}", status), type=ApiError, strict=True)


async def test_the_served_asyncapi_description_is_the_contract_s_with_every_command_op(
    api: str,
) -> None:
    document = await get(f"{api}/v1/asyncapi.json")
    assert document["asyncapi"] == "3.0.0"
    assert document == msgspec.json.decode(msgspec.json.encode(asyncapi_document()))
    addresses = {channel["address"] for channel in document["channels"].values()}
    for op in COMMAND_TYPES:
        subjects = {command_subject(op), rpc_subject(op), result_subject(op), dlq_subject(op)}
        assert subjects <= addresses, op


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/providers/reliability?days=0", "days must be between 1 and 90"),
        ("/v1/providers/reliability?days=366", "days must be between 1 and 90"),
        ("/v1/providers/health?region=U$A", "region must be"),
        ("/v1/providers/failover-rates?region=x", "region must be"),
        (
            "/v1/connections/acct-a/syncs?limit=0&space_id=space-1",
            "limit must be between 1 and 1000",
        ),
        ("/v1/connections/acct-a/history?limit=ten&space_id=space-1", "limit must be an integer"),
        ("/v1/metrics/overview?as_of=yesterday", "as_of must be an ISO 8601 time"),
        ("/v1/connections/acct-a/status?space_id=space-1&as_of=2026-03-02T11:00:00", "UTC offset"),
        ("/v1/providers/health?as_of=2026-03-02T12:00:01Z", "must not be in the future"),
        ("/v1/providers/reliability?as_of=0001-01-01T00:00:00Z", "as_of must not be before"),
        ("/v1/metrics/overview?as_of=0001-01-01T00:00:00Z", "as_of must not be before"),
        ("/v1/providers/health?regoin=US", "unknown query parameter(s) regoin"),
        ("/v1/sagas?status=stuck", "status must be one of running, compensating, completed"),
        ("/v1/breakers?limit=0", "limit must be between 1 and 1000"),
        ("/v1/breakers?limit=1001", "limit must be between 1 and 1000"),
        ("/v1/breakers?after=not%20a%20cursor", "after must be the next_after of an earlier"),
        # base64url of '["plaid"]': decodes, but is no breaker's place in the order
        ("/v1/breakers?after=WyJwbGFpZCJd", "after must be the next_after of an earlier"),
        # base64url of '["plaid","US","a\\u0000"]': text PostgreSQL cannot hold
        ("/v1/breakers?after=WyJwbGFpZCIsIlVTIiwiYVx1MDAwMCJd", "after must be the next_after"),
    ],
)
async def test_bad_query_parameters_get_a_400_that_says_what_is_wrong(
    api: str, path: str, message: str
) -> None:
    body = await get(f"{api}{path}", status=400)
    assert body["error"]["code"] == "bad_request" and message in body["error"]["message"]


async def test_an_unknown_account_is_a_404_for_status_and_reliability(api: str) -> None:
    body = await get(f"{api}/v1/connections/nobody/status?space_id=space-1", status=404)
    assert "nobody" in body["error"]["message"]
    await get(f"{api}/v1/connections/nobody/reliability?space_id=space-1", status=404)


async def add_breakers(database_url: str, keys: list[tuple[str, str, str | None]]) -> None:
    """Breakers as the projection leaves them: one row each (its id is its key's), closed."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO breakers (breaker_id, provider, region, institution_id, last_event, "
            "state, since) VALUES ($1, $2, $3, $4, 1, 'closed', $5)",
            [(breaker_id_for(*key), *key, T0) for key in keys],
        )
    finally:
        await connection.close()


async def test_breakers_come_in_pages_that_together_hold_each_breaker_once(
    api: str, database_url: str
) -> None:
    banks = [f"ins_{n:02d}" for n in range(6)]
    mexico = [("belvo", "MX", None), ("belvo", "MX", "bancorebozo"), ("mx", "MX", "bancorebozo")]
    await add_breakers(
        database_url, [("plaid", "US", None), *[("plaid", "US", bank) for bank in banks], *mexico]
    )
    whole = await get(f"{api}/v1/breakers?limit=1000")
    assert not whole["has_more"] and whole["next_after"] is None

    pages, after = [], ""
    while True:
        page = await get(f"{api}/v1/breakers?limit=3{after}")
        pages.append(page)
        if not page["has_more"]:
            break
        after = f"&after={page['next_after']}"
    assert all(len(page["breakers"]) == 3 for page in pages[:-1])
    assert 1 <= len(pages[-1]["breakers"]) <= 3 and pages[-1]["next_after"] is None
    assert [b for page in pages for b in page["breakers"]] == whole["breakers"]
    keys = [(b["provider"], b["region"], b["institution_id"]) for b in whole["breakers"]]
    assert len(set(keys)) == len(keys) >= 11
    # Provider, region, then bank with the provider-wide breaker first.
    plaid_us = [bank for provider, region, bank in keys if (provider, region) == ("plaid", "US")]
    assert plaid_us == [None, *banks]

    # The filters page the same way.
    first = await get(f"{api}/v1/breakers?provider=plaid&limit=4")
    rest = await get(f"{api}/v1/breakers?provider=plaid&limit=4&after={first['next_after']}")
    assert [b["institution_id"] for b in first["breakers"] + rest["breakers"]][:7] == [
        None,
        *banks,
    ]


async def test_breakers_without_a_limit_come_a_hundred_at_a_time(
    api: str, database_url: str
) -> None:
    await add_breakers(database_url, [("plaid", "US", f"ins_{n:03d}") for n in range(150)])

    page = await get(f"{api}/v1/breakers")

    assert len(page["breakers"]) == 100 and page["has_more"]
    rest = await get(f"{api}/v1/breakers?after={page['next_after']}")
    assert not rest["has_more"] and len(page["breakers"]) + len(rest["breakers"]) >= 150
