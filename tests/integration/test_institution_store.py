"""The institution mapping in the real event store: seeded once however many replicas
start, changed by command with who and why, and the change seen by every replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import pytest
from eventsourcing.cryptography import AESCipher

from events.commands import MapInstitution
from events.institutions import InstitutionMappingChanged
from infra.bootstrap import pg_parts
from infra.config import DEFAULT_HIERARCHY
from infra.eventlog.institution_follower import InstitutionFollower
from infra.eventstore import SyncyardApplication, library_env
from infra.institution_store import PostgresInstitutionStore, open_institutions
from services.institutions.domain import mapping_id_for
from services.institutions.handlers import Institutions, map_institution
from services.institutions.seed import load_seed
from tests.support.harness import eventually, running_syncyard, settings_for, stored_events

pytestmark = pytest.mark.integration

SEEDED = len(load_seed())
KEY = AESCipher.create_key(32)


@dataclass
class Deps:
    institutions: Institutions | None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass
class Replica:
    app: SyncyardApplication
    institutions: Institutions
    follower: InstitutionFollower


@contextlib.asynccontextmanager
async def replica(database_url: str) -> AsyncIterator[Replica]:
    """One syncyard's view of the mapping, built as infra/bootstrap.py builds it."""
    app = await asyncio.to_thread(SyncyardApplication, library_env(pg_parts(database_url), KEY))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    try:
        institutions, follower = await open_institutions(
            app, pool, hierarchy=DEFAULT_HIERARCHY, providers=("plaid", "mx", "plaid_eu")
        )
        yield Replica(app, institutions, follower)
    finally:
        await pool.close()
        await asyncio.to_thread(app.close)


def move_chase(*providers: str, command_id: str = "map-1") -> MapInstitution:
    return MapInstitution(
        command_id=command_id,
        space_id="ops",
        institution_id="chase",
        region="US",
        providers=providers,
        actor="ana@ops",
        reason="plaid outage at Chase",
    )


async def topics(database_url: str) -> list[str]:
    return [topic for _, topic, _ in await stored_events(database_url)]


async def test_the_first_start_seeds_and_a_restart_loads_without_seeding(
    database_url: str,
) -> None:
    async with replica(database_url) as first:
        seeded = first.institutions.directory

    async with replica(database_url) as second:
        loaded = second.institutions.directory

    assert len(seeded) == len(loaded) == SEEDED
    assert (await topics(database_url)).count("InstitutionMappingSeeded") == SEEDED
    for entry in load_seed():
        assert loaded.get(entry.id) == seeded.get(entry.id)
    assert loaded.providers_for("chase", "US") == ("plaid", "mx", "finicity")
    assert loaded.providers_for("banorte", "MX") == ("belvo", "mx")
    assert loaded.providers_for("bitso", "CRYPTO") == ("bitso", "blockchain")


async def test_replicas_starting_together_seed_each_institution_once(database_url: str) -> None:
    env = library_env(pg_parts(database_url), KEY)
    async with contextlib.AsyncExitStack() as stack:
        # Built one after another: the library's own table and function creation
        # is not safe to race. Seeding, the part that is ours, runs all at once.
        apps = []
        for _ in range(3):
            app = await asyncio.to_thread(SyncyardApplication, env)
            stack.callback(app.close)
            apps.append(app)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
        stack.push_async_callback(pool.close)

        opened = await asyncio.gather(
            *(
                open_institutions(app, pool, hierarchy=DEFAULT_HIERARCHY, providers=())
                for app in apps
            )
        )

        assert all(len(institutions.directory) == SEEDED for institutions, _ in opened)

    assert (await topics(database_url)).count("InstitutionMappingSeeded") == SEEDED


async def test_a_change_is_stored_with_who_and_why_and_outlives_a_restart(
    database_url: str,
) -> None:
    async with replica(database_url) as first:
        result = await map_institution(
            Deps(first.institutions), move_chase("mx", "plaid_eu"), {"traceparent": "00-ab"}
        )
        assert result.success, result.error
        again = await map_institution(Deps(first.institutions), move_chase("mx", "plaid_eu"), {})
        assert again.duplicate
        store = PostgresInstitutionStore(first.app, first.follower.pool)
        change = (await store.load(mapping_id_for("chase")))[-1]

    assert isinstance(change, InstitutionMappingChanged)
    assert (change.actor, change.reason) == ("ana@ops", "plaid outage at Chase")
    assert (change.old_providers, change.new_providers) == (
        ("plaid", "mx", "finicity"),
        ("mx", "plaid_eu"),
    )
    assert (await topics(database_url)).count("InstitutionMappingChanged") == 1
    async with replica(database_url) as restarted:
        assert restarted.institutions.directory.providers_for("chase", "US") == ("mx", "plaid_eu")


async def test_another_replicas_directory_follows_a_change(database_url: str) -> None:
    async with replica(database_url) as a, replica(database_url) as b:
        stop = asyncio.Event()
        following = asyncio.create_task(b.follower.run(stop))
        try:
            result = await map_institution(Deps(a.institutions), move_chase("finicity"), {})
            assert result.success, result.error

            async def bs_order() -> tuple[str, ...]:
                return b.institutions.directory.providers_for("chase", "US")

            await eventually(bs_order, lambda order: order == ("finicity",), timeout=5)
        finally:
            stop.set()
            await following


async def test_a_worker_s_directory_follows_another_replica_s_change_through_its_log_reader(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None
) -> None:
    """In a worker the breaker follower reads the directory's events too (one reader of
    the log per process): a change made at one replica reaches the other's directory."""
    settings = settings_for(sandbox)
    async with (
        running_syncyard(settings, nats_url, database_url) as a,
        running_syncyard(settings, nats_url, database_url) as b,
    ):
        result = await a.execute(move_chase("finicity"))
        assert result.success, result.error
        assert b.deps.institutions is not None

        async def bs_order() -> tuple[str, ...]:
            assert b.deps.institutions is not None
            return b.deps.institutions.directory.providers_for("chase", "US")

        await eventually(bs_order, lambda order: order == ("finicity",), timeout=10)
