"""DATABASE_URL's TLS settings reach every connection the event store opens."""

from __future__ import annotations

import asyncio

import pytest
from eventsourcing.persistence import PersistenceError

from infra.bootstrap import pg_parts
from infra.eventstore import SyncyardApplication, library_env

pytestmark = pytest.mark.integration

KEY = "0" * 43 + "="


def with_param(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


async def test_the_event_store_obeys_the_sslmode_of_the_database_url(database_url: str) -> None:
    # The test server speaks no TLS: `sslmode=require` must fail rather than be
    # dropped on the way to the library (which used to connect in clear anyway).
    plain = with_param(database_url, "sslmode=disable")
    app = await asyncio.to_thread(SyncyardApplication, library_env(pg_parts(plain), KEY))
    app.close()

    required = with_param(database_url, "sslmode=require")
    env = {**library_env(pg_parts(required), KEY), "POSTGRES_CONNECT_TIMEOUT": "2"}
    with pytest.raises(PersistenceError, match="couldn't get a connection"):
        await asyncio.to_thread(SyncyardApplication, env)
