"""Read-only access to the event store for operator commands (`replay`, `audit`).

They need the database and the store's cipher key, not NATS nor the
eventsourcing application: a pool and a notification-log reader with the
same mapper the store writes with.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from infra.config import Settings
from infra.eventlog.reader import NotificationLogReader
from infra.eventstore import EVENTS_TABLE, store_mapper

DATABASE_URL_FILE = "database.url"


class StoreNotFoundError(RuntimeError):
    """Where the event store is, or its key, cannot be found from the settings."""


def database_url_for(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    url_file = settings.state_dir / DATABASE_URL_FILE
    if url_file.exists():
        return url_file.read_text().strip()
    raise StoreNotFoundError(
        f"no running syncyard found ({url_file} is missing): start one with `make run`, "
        "or set DATABASE_URL to the database it uses"
    )


def existing_cipher_key(settings: Settings) -> str:
    """The key the events were encrypted with: never a new one, which could read nothing."""
    if settings.cipher_key:
        return settings.cipher_key
    key_file = settings.state_dir / "cipher.key"
    if key_file.exists():
        return key_file.read_text().strip()
    raise StoreNotFoundError(
        f"no cipher key: set SYNCYARD_CIPHER_KEY, or SYNCYARD_STATE_DIR to the folder "
        f"holding the embedded run's cipher.key (looked in {settings.state_dir})"
    )


@contextlib.asynccontextmanager
async def open_log(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, NotificationLogReader]]:
    """A small pool on the store's database and a reader that decrypts and upcasts."""
    key = existing_cipher_key(settings)
    pool = await asyncpg.create_pool(database_url_for(settings), min_size=1, max_size=8)
    try:
        yield pool, NotificationLogReader(EVENTS_TABLE, store_mapper(key))
    finally:
        await pool.close()
