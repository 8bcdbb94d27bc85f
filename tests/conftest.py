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
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import nats
import pytest

from infra.embedded import EmbeddedNats, EmbeddedPostgres

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
    """URL of a NATS server with JetStream: ``$SYNCYARD_TEST_NATS_URL`` or an embedded one."""
    if url := os.environ.get(NATS_URL_ENV):
        yield url
        return
    async with EmbeddedNats(state_dir) as server:
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
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_url)
    try:
        # The name is ours (hex), so interpolating it cannot inject anything.
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlsplit(pg_url)._replace(path=f"/{name}").geturl()
    finally:
        admin = await asyncpg.connect(pg_url)
        try:
            # FORCE: a test that leaked a connection must not make the next one fail.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def clean_jetstream(nats_url: str) -> None:
    """Delete every JetStream stream (KV buckets and object stores included) before the test."""
    client = await nats.connect(nats_url)
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
