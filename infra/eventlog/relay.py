"""The relay: every stored event, once, onto `syncyard.evt.<aggregate>.<Event>`.

Position is kept in PostgreSQL and advanced only after JetStream acked the
whole page; a crash repeats at most that page, and JetStream drops the repeats
by `Nats-Msg-Id`. One relay runs at a time per store, elected by a PostgreSQL
advisory lock; others wait as warm standbys.

The `Nats-Msg-Id` is an HMAC of the notification id under a key derived from
the store's cipher key (`event_msg_id`), not the notification id itself. The
ids are sequential, so a client that may publish on `syncyard.evt.*` could
otherwise publish first with the next one, and JetStream would keep its
forgery and drop the real event as the duplicate. Two defences, each enough
alone: nats-server lets only the relay's user publish events (`infra/nats_roles.py`),
and the id cannot be guessed without the key, which holds on a NATS whose
permissions are missing or wrong. Readers identify an event by the
`Syncyard-Notification-Id` header, which stays the plain position.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging

import asyncpg
import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.aio.client import Client

from events.credentials import PRIVATE_EVENT_TYPES
from events.subjects import HEADER_MSG_ID, HEADER_NOTIFICATION_ID, event_subject
from infra.eventlog.page_publisher import OutgoingMessage, PagePublisher
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


# HKDF's `info`: the key serves this one purpose, unrelated to what the cipher key encrypts.
_MSG_ID_KEY_INFO = b"syncyard relay Nats-Msg-Id v1"


def event_id_key(cipher_key: str) -> bytes:
    """The relay's message-id key, derived (HKDF-SHA256) from the store's base64 cipher key.

    Derived rather than configured: every relay of a store must compute the same
    ids for a repeat to be dropped, and each already holds that key. Rotating the
    cipher key changes the ids, so a page repeated across the rotation (within
    the duplicate window) is published twice; readers dedupe by notification id.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MSG_ID_KEY_INFO)
    return hkdf.derive(base64.b64decode(cipher_key))


def event_msg_id(key: bytes, notification_id: int) -> str:
    """The `Nats-Msg-Id` of the event at `notification_id`: unguessable without `key`."""
    digest = hmac.new(key, b"evt:%d" % notification_id, hashlib.sha256).hexdigest()
    return f"evt:{digest[:32]}"


@functools.lru_cache(maxsize=256)
def subject_for(topic: str) -> str:
    """`events.connection:SyncCompleted` → `syncyard.evt.connection.SyncCompleted`."""
    module, name = topic.split(":", 1)
    return event_subject(module.rsplit(".", 1)[-1], name)


class EventRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        reader: NotificationLogReader,
        *,
        msg_id_key: bytes,
        name: str = "default",
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.pool = pool
        self.publisher = PagePublisher(nc)
        self.reader = reader
        if len(msg_id_key) < 16:
            raise ValueError("the relay's message-id key must be 16 bytes or more")
        self.msg_id_key = msg_id_key
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
        messages = []
        for note in page:
            if note.topic in PRIVATE_TOPICS:
                continue
            headers = {
                HEADER_MSG_ID: event_msg_id(self.msg_id_key, note.id),
                HEADER_NOTIFICATION_ID: str(note.id),
            }
            traceparent = _metadata.decode(note.state).metadata.get("traceparent")
            if traceparent:
                headers["traceparent"] = traceparent
            # The stored JSON is the event's msgspec encoding: forwarded as it is.
            messages.append(OutgoingMessage(subject_for(note.topic), note.state, headers))
        # Pipelined: all in flight at once, and the page counts only if every ack came back.
        await self.publisher.publish(messages)
