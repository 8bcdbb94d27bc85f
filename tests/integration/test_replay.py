"""`syncyard replay`: rebuilt read models equal the live ones, and a tampered row is found."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from infra.bootstrap import Runtime
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, store_mapper
from projections import verify as verify_module
from projections.engine import projection_lag
from projections.rebuild import as_of
from projections.registry import all_projections
from services.ports import DbConnection
from tests.integration.test_cli import syncyard_cli
from tests.support.eventgen import write_events
from tests.support.harness import CIPHER_KEY, Client, eventually, inject_fault, register, sync
from tests.support.sandbox_admin import SandboxAdmin

pytestmark = pytest.mark.integration

REBUILDABLE = [p for p in all_projections() if p.tables]


async def mixed_workload(upstream: Client, sandbox: str) -> None:
    """Registrations, plain syncs, failovers while plaid is down, and errors without one."""
    for account in ("r1", "r2"):
        assert (await upstream.send(register(account, "plaid"))).success
    assert (await upstream.send(register("r2", "mx"))).success
    for n in range(4):
        assert (await upstream.send(sync(f"r{n % 2 + 1}", f"calm-{n}"))).success
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=500,
        error_code="INTERNAL_SERVER_ERROR",
        count=3,
    )
    for n in range(3):
        await upstream.send(sync("r2", f"down-{n}"))
    # Once plaid's live score drops, r2 goes to mx first and leaves a fault unspent.
    await clear_faults(sandbox)
    await inject_fault(
        sandbox,
        provider="plaid",
        endpoint="/transactions/sync",
        status=400,
        error_code="INVALID_REQUEST",
        count=1,
    )
    await upstream.send(sync("r1", "invalid-0"))
    for n in range(2):
        assert (await upstream.send(sync("r1", f"after-{n}"))).success


async def clear_faults(sandbox: str) -> None:
    async with aiohttp.ClientSession() as http:
        await SandboxAdmin(http, sandbox).clear_faults()


async def caught_up(pool: asyncpg.Pool) -> None:
    async def lag() -> list[dict[str, Any]]:
        return await projection_lag(pool)

    await eventually(lag, lambda rows: bool(rows) and all(r["behind"] == 0 for r in rows))


def cli_env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "SYNCYARD_CIPHER_KEY": CIPHER_KEY}


async def live_rows(pool: asyncpg.Pool, schema: str = "public") -> dict[str, list[str]]:
    """Every row of every rebuildable table, floats to 9 significant digits (page sums)."""
    found = {}
    for table in (t for p in REBUILDABLE for t in p.tables):
        query = f"SELECT row_to_json(x)::text AS row FROM {schema}.{table} x"  # noqa: S608
        rows = await pool.fetch(query)
        found[table] = sorted(json.dumps(_rounded(json.loads(r["row"]))) for r in rows)
    return found


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: float(f"{v:.9g}") if isinstance(v, float) else v for k, v in row.items()}


async def test_verify_finds_no_difference_after_a_mixed_workload_then_finds_a_deleted_row(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    await mixed_workload(upstream, sandbox)
    await caught_up(syncyard.pool)

    code, out = await syncyard_cli("replay", "--verify", env=cli_env(database_url))
    assert code == 0, out
    assert "0 differences" in out

    removed = await syncyard.pool.fetchrow(
        "DELETE FROM connection_attempts WHERE notification_id = "
        "(SELECT max(notification_id) FROM connection_attempts) RETURNING notification_id"
    )
    assert removed is not None
    code, out = await syncyard_cli("replay", "--verify", env=cli_env(database_url))
    assert code == 1, out
    assert "1 differences" in out
    assert "connection_attempts.connection_attempts: rebuilt only:" in out
    assert f"'notification_id': {removed['notification_id']}" in out


async def test_from_zero_rebuilds_the_live_tables_to_the_same_rows_and_tailing_goes_on(
    syncyard: Runtime, upstream: Client, sandbox: str, database_url: str
) -> None:
    await mixed_workload(upstream, sandbox)
    await caught_up(syncyard.pool)
    before = await live_rows(syncyard.pool)
    await syncyard.pool.execute("DELETE FROM connection_attempts")  # damage the live tables

    code, out = await syncyard_cli("replay", "--from-zero", env=cli_env(database_url))
    assert code == 0, out
    assert await live_rows(syncyard.pool) == before

    # The live projector tails the swapped-in tables as it did the old ones.
    assert (await upstream.send(sync("r1", "after-swap"))).success
    await caught_up(syncyard.pool)
    count = await syncyard.pool.fetchval(
        "SELECT count(*) FROM connection_attempts WHERE command_id = 'after-swap'"
    )
    assert count == 1
    code, out = await syncyard_cli("replay", "--verify", env=cli_env(database_url))
    assert code == 0, out


async def test_replay_of_an_unknown_read_model_names_the_valid_ones(database_url: str) -> None:
    code, out = await syncyard_cli("replay", "provider_hell", env=cli_env(database_url))
    assert code == 2
    assert "unknown read model 'provider_hell'" in out
    assert "provider_health" in out and "connection_attempts" in out


async def test_read_models_as_of_a_past_moment_equal_the_live_ones_at_that_moment(
    syncyard: Runtime, upstream: Client, sandbox: str
) -> None:
    assert (await upstream.send(register("past-1", "plaid"))).success
    assert (await upstream.send(sync("past-1", "past-sync-0"))).success
    await caught_up(syncyard.pool)
    moment, then = datetime.now(UTC), await live_rows(syncyard.pool)
    await mixed_workload(upstream, sandbox)
    await caught_up(syncyard.pool)
    assert await live_rows(syncyard.pool) != then

    async with as_of(syncyard.pool, syncyard.reader, REBUILDABLE, moment) as schema:
        assert await live_rows(syncyard.pool, schema) == then
    tables = await syncyard.pool.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", schema
    )
    assert tables == 0  # the temporary schema is gone


async def test_replay_without_flags_brings_a_read_model_up_to_the_head_of_the_log(
    database_url: str,
) -> None:
    await write_events(database_url, CIPHER_KEY, 3_000, connections=20)
    code, out = await syncyard_cli("replay", "sync_log", env=cli_env(database_url))
    assert code == 0, out
    assert "replayed sync_log" in out
    conn = await asyncpg.connect(database_url)
    try:
        lag = {r["projection"]: r for r in await projection_lag(conn)}
        assert lag["sync_log"]["position"] == 3_000 and lag["sync_log"]["behind"] == 0
        assert "provider_health" not in lag  # only the read model named
        assert await conn.fetchval("SELECT count(*) FROM sync_log") > 0
    finally:
        await conn.close()


async def attempts_position(pool: asyncpg.Pool) -> int:
    return int(
        await pool.fetchval(
            "SELECT position FROM syncyard_projection_position "
            "WHERE projection = 'connection_attempts'"
        )
    )


async def test_verify_locks_nothing_live_and_compares_one_snapshot_while_the_projector_moves_on(
    syncyard: Runtime,
    upstream: Client,
    sandbox: str,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await mixed_workload(upstream, sandbox)
    await caught_up(syncyard.pool)
    compare = verify_module._compare
    moved_during_compare: list[int] = []

    async def compare_while_live_moves(
        conn: DbConnection, projection: str, table: str, shadow: str
    ) -> list[verify_module.Difference]:
        if not moved_during_compare:
            # The live projector commits past the snapshot being compared: with the
            # live positions locked, as verify once did, it could not.
            before = await attempts_position(syncyard.pool)
            assert (await upstream.send(sync("r1", "during-verify"))).success
            after = await eventually(lambda: attempts_position(syncyard.pool), lambda p: p > before)
            moved_during_compare.append(after)
        return await compare(conn, projection, table, shadow)

    monkeypatch.setattr(verify_module, "_compare", compare_while_live_moves)
    reader = NotificationLogReader(EVENTS_TABLE, store_mapper(CIPHER_KEY))
    async with asyncpg.create_pool(database_url, min_size=2, max_size=6) as pool:
        differences = await verify_module.verify(pool, reader, REBUILDABLE)

    assert moved_during_compare
    assert differences == []
