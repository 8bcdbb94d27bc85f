"""The relay: every stored event, once, onto `syncyard.evt.<aggregate>.<Event>`.

Position is kept in PostgreSQL and advanced only after JetStream acked the
whole page; a crash repeats at most that page, and JetStream drops the repeats
by `Nats-Msg-Id` (the notification id). One relay runs at a time per store,
elected by a PostgreSQL advisory lock; others wait as warm standbys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

import asyncpg
import msgspec
from nats.js import JetStreamContext

from events.credentials import PRIVATE_EVENT_TYPES
from events.subjects import HEADER_MSG_ID, HEADER_NOTIFICATION_ID, event_subject
from infra.eventlog.reader import NotificationLogReader, PlainNotification
from infra.waiting import wait_for_either, wait_for_stop
from services.ports import DbConnection, topic_of

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x5359_4E43_0001  # "SYNC" + 1: the relay's advisory lock
PAGE_SIZE = 256
POLL_INTERVAL_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_relay_position (
    relay text PRIMARY KEY,
    position bigint NOT NULL,
    published bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""


PRIVATE_TOPICS = frozenset(topic_of(cls) for cls in PRIVATE_EVENT_TYPES)


class _Metadata(msgspec.Struct):
    metadata: dict[str, str] = {}


_metadata = msgspec.json.Decoder(_Metadata)


@functools.lru_cache(maxsize=256)
def subject_for(topic: str) -> str:
    """`events.connection:SyncCompleted` → `syncyard.evt.connection.SyncCompleted`."""
    module, name = topic.split(":", 1)
    return event_subject(module.rsplit(".", 1)[-1], name)


class EventRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        reader: NotificationLogReader,
        *,
        name: str = "default",
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.pool = pool
        self.js = js
        self.reader = reader
        self.name = name
        self.page_size = page_size
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(SCHEMA)
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                    break
                await wait_for_stop(stop, POLL_INTERVAL_S)
            else:
                return
            await conn.add_listener(self.reader.channel, self._on_notify)
            try:
                await self._follow(conn, stop)
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(self.reader.channel, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_KEY)

    async def _follow(self, conn: DbConnection, stop: asyncio.Event) -> None:
        await conn.execute(
            "INSERT INTO syncyard_relay_position (relay, position) VALUES ($1, 0) "
            "ON CONFLICT (relay) DO NOTHING",
            self.name,
        )
        position = int(
            await conn.fetchval(
                "SELECT position FROM syncyard_relay_position WHERE relay = $1", self.name
            )
        )
        while not stop.is_set():
            self._wake.clear()
            page = await self.reader.read_plain(conn, position, self.page_size)
            if not page:
                await wait_for_either(stop, self._wake, POLL_INTERVAL_S)
                continue
            await self._publish(page)
            position = page[-1].id
            await conn.execute(
                "UPDATE syncyard_relay_position SET position = $2, "
                "published = published + $3, updated_at = now() WHERE relay = $1",
                self.name,
                position,
                len(page),
            )

    async def _publish(self, page: list[PlainNotification]) -> None:
        sends = []
        for note in page:
            if note.topic in PRIVATE_TOPICS:
                continue
            headers = {
                HEADER_MSG_ID: f"evt:{note.id}",
                HEADER_NOTIFICATION_ID: str(note.id),
            }
            traceparent = _metadata.decode(note.state).metadata.get("traceparent")
            if traceparent:
                headers["traceparent"] = traceparent
            # The stored JSON is the event's msgspec encoding: forwarded as it is.
            sends.append(self.js.publish(subject_for(note.topic), note.state, headers=headers))
        # Pipelined: all in flight at once, and the page counts only if every ack came back.
        await asyncio.gather(*sends)
