"""The read-model HTTP API over a real database: each route's JSON, its description, its 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from infra.http.api import ROUTES, create_app
from infra.http.openapi_schemas import RESPONSES
from projections.engine import migrate
from projections.registry import all_projections
from tests.integration.read_model_events import MIN, T0, A, apply, health_log, status_log

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[str]:
    """The API on a free port over a database holding both known sequences, clock at T0."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    log = status_log()
    for note in health_log().notes[1:]:  # acct-a is registered once already
        log.add(note.event)
    log.call(A, T0 - 50 * MIN, "plaid", "failure", command="c6", attempt=1)
    log.call(A, T0 - 50 * MIN, "mx", "success", command="c6", attempt=2, failover=True)
    async with pool.acquire() as conn:
        await apply(conn, log)
    await migrate(pool, all_projections())
    # The event store's table, as the API reads it: only the newest notification id matters.
    await pool.execute(
        "CREATE TABLE syncyard_events (notification_id bigint PRIMARY KEY);"
        "INSERT INTO syncyard_events VALUES (42);"
        "UPDATE syncyard_projection_position SET position = 40, updated_at = now() "
        "WHERE projection = 'sync_log'"
    )
    runner = web.AppRunner(create_app(pool, lambda: True, clock=lambda: T0), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await pool.close()


async def get(url: str, status: int = 200) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body = await resp.json()
        assert resp.status == status, body
        return body


async def test_every_read_model_route_answers_with_its_numbers(api: str) -> None:
    health = await get(f"{api}/v1/providers/health?region=US&provider=plaid")
    (plaid,) = health["providers"]
    assert plaid["health_score"] == 65 and plaid["window_5m"]["successes"] == 2
    earlier = await get(f"{api}/v1/providers/health?provider=plaid&as_of=2026-03-02T11:58:00Z")
    assert earlier["providers"][0]["window_5m"]["successes"] == 1

    status = await get(f"{api}/v1/connections/acct-a/status")
    assert status["connections"][0]["consecutive_failures"] == 2
    history = await get(f"{api}/v1/connections/acct-a/history?limit=2")
    assert [a["failover_from"] for a in history["attempts"]] == ["plaid", None]
    assert [a["failover_to"] for a in history["attempts"]] == [None, "mx"]
    syncs = await get(f"{api}/v1/connections/acct-a/syncs")
    assert [s["outcome"] for s in syncs["syncs"]] == ["deferred", "failure", "success"]
    reliability = await get(f"{api}/v1/connections/acct-a/reliability?days=1")
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


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "null": (type(None),), "object": (dict,), "array": (list,),
}  # fmt: skip


def mismatches(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Where `value` strays from `schema`: type, enum, and exactly the properties described."""
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    allowed = tuple(t for k in kinds for t in _TYPES[k])
    if kinds and (
        not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
    ):
        return [f"{where}: {value!r} is not {kinds}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    found = []
    if isinstance(value, dict) and "properties" in schema:
        if set(value) != set(schema["properties"]):
            found.append(f"{where}: keys {sorted(value)} != {sorted(schema['properties'])}")
        for key in set(value) & set(schema["properties"]):
            found += mismatches(schema["properties"][key], value[key], f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += mismatches(schema["items"], item, f"{where}[{i}]")
    return found


async def test_every_response_has_the_shape_its_description_gives(api: str) -> None:
    filled = {"account_id": "acct-a"}
    for route in ROUTES:
        path = route.path.format(**filled)
        body = await get(f"{api}{path}")
        assert mismatches(RESPONSES[route.path], body) == [], route.path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/providers/reliability?days=0", "days must be between 1 and 90"),
        ("/v1/providers/reliability?days=366", "days must be between 1 and 90"),
        ("/v1/providers/health?region=U$A", "region must be"),
        ("/v1/providers/failover-rates?region=x", "region must be"),
        ("/v1/connections/acct-a/syncs?limit=0", "limit must be between 1 and 1000"),
        ("/v1/connections/acct-a/history?limit=ten", "limit must be an integer"),
        ("/v1/metrics/overview?as_of=yesterday", "as_of must be an ISO 8601 time"),
        ("/v1/connections/acct-a/status?as_of=2026-03-02T11:00:00", "UTC offset"),
        ("/v1/providers/health?as_of=2026-03-02T12:00:01Z", "must not be in the future"),
        ("/v1/providers/health?regoin=US", "unknown query parameter(s) regoin"),
        ("/v1/sagas?status=stuck", "status must be one of running, compensating, completed"),
    ],
)
async def test_bad_query_parameters_get_a_400_that_says_what_is_wrong(
    api: str, path: str, message: str
) -> None:
    body = await get(f"{api}{path}", status=400)
    assert body["error"]["code"] == "bad_request" and message in body["error"]["message"]


async def test_an_unknown_account_is_a_404_for_status_and_reliability(api: str) -> None:
    body = await get(f"{api}/v1/connections/nobody/status", status=404)
    assert "nobody" in body["error"]["message"]
    await get(f"{api}/v1/connections/nobody/reliability", status=404)
