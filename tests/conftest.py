"""Shared fixtures: real NATS and PostgreSQL, started once per session.

Chained as in nats.py's own suite: ``state_dir`` → the servers (``nats_url``,
``pg_url``) → per-test isolation (``database_url``, ``clean_jetstream``).
Servers start only when an integration test asks for them; unit tests never do.
Set ``SYNCYARD_TEST_NATS_URL`` / ``SYNCYARD_TEST_DATABASE_URL`` to use servers
you run yourself (the database URL's user needs CREATEDB: each test gets its own).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from tests.support import bus
from tests.support.databases import create_database, drop_database

NATS_URL_ENV = "SYNCYARD_TEST_NATS_URL"
DATABASE_URL_ENV = "SYNCYARD_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    """One directory for the session's embedded servers (JetStream store, PGDATA, logs).

    Not under pytest's basetemp: every pytest run resets that folder's parent
    to mode 0700, and as root PostgreSQL runs as another user, so a second
    suite started on the same machine (another checkout) would cut the first
    one's server off from its data directory mid-run.
    """
    path = Path(tempfile.mkdtemp(prefix="syncyard-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
async def nats_url(state_dir: Path) -> AsyncIterator[str]:
    """URL of a NATS server with JetStream: ``$SYNCYARD_TEST_NATS_URL`` or an embedded one.

    The embedded one runs with syncyard's per-role permissions: connect to it
    through `tests.support.bus` (``bus.connect(nats_url, role)``), which knows its logins.
    """
    if url := os.environ.get(NATS_URL_ENV):
        yield url
        return
    async with EmbeddedNats(state_dir) as server:
        bus.register(server.url, server.credentials)
        yield server.url


@pytest.fixture(scope="session")
async def pg_url(state_dir: Path) -> AsyncIterator[str]:
    """Admin URL of a PostgreSQL server: ``$SYNCYARD_TEST_DATABASE_URL`` or an embedded one.

    Tests should want ``database_url`` instead, which isolates them from each other.
    """
    if url := os.environ.get(DATABASE_URL_ENV):
        yield url
        return
    # Not durable: no fsync per commit. Nothing here has to survive a power cut,
    # and the suite commits a lot.
    async with EmbeddedPostgres(state_dir, durable=False) as server:
        yield server.url


@pytest.fixture
async def database_url(pg_url: str) -> AsyncIterator[str]:
    """URL of a fresh database made for this test alone, dropped afterwards."""
    url = await create_database(pg_url, "test")
    try:
        yield url
    finally:
        await drop_database(pg_url, url)


@pytest.fixture
async def clean_jetstream(nats_url: str) -> None:
    """Delete every JetStream stream (KV buckets and object stores included) before the test."""
    client = await bus.connect(nats_url, bus.ADMIN)
    try:
        manager = client.jsm()
        # streams_info returns one page at a time; deleting empties it, so ask again.
        while names := [i.config.name for i in await manager.streams_info() if i.config.name]:
            for name in names:
                await manager.delete_stream(name)
    finally:
        await client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test says what it touches: `unit` (no I/O) or `integration` (real servers)."""
    unmarked = [
        item.nodeid
        for item in items
        if not any(item.get_closest_marker(m) for m in ("unit", "integration"))
    ]
    if unmarked:
        raise pytest.UsageError("tests without a unit/integration marker: " + ", ".join(unmarked))
