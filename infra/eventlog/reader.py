"""Reading the event store's notification log directly, in pages, with asyncpg.

The relay and the projections both follow the log this way: it is the same
table the eventsourcing recorder writes (inserts serialised by its table lock,
so notification ids become visible in order and a reader never skips a gap).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Cipher, Mapper
from eventsourcing.utils import resolve_topic

from events.base import DomainEvent
from events.upcasting import current_json
from services.ports import DbConnection, Notification, Page


class PlainNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A stored event decrypted but not decoded: its JSON, as the mapper wrote it."""

    id: int
    topic: str
    state: bytes


_aesgcm: dict[bytes, AESGCM] = {}


def _decrypt(cipher: Cipher, state: bytes) -> bytes:
    """The library's AES-GCM decryption, without building a new AESGCM per event.

    `AESCipher.decrypt` constructs one for every call, which was most of a
    replay's decryption time; the stored format (nonce, tag, ciphertext) is the same.
    """
    if type(cipher) is not AESCipher:
        return cipher.decrypt(state)
    aesgcm = _aesgcm.get(cipher.key)
    if aesgcm is None:
        aesgcm = _aesgcm[cipher.key] = AESGCM(cipher.key)
    if len(state) < 28:
        raise ValueError("Damaged cipher text: shorter than its nonce and tag")
    try:
        return aesgcm.decrypt(state[:12], state[28:] + state[12:28], None)
    except InvalidTag:
        raise ValueError("Invalid cipher tag") from None


def plaintext(mapper: Mapper[Any], state: bytes) -> bytes:
    if mapper.cipher:
        state = _decrypt(mapper.cipher, state)
    if mapper.compressor:
        state = mapper.compressor.decompress(state)
    return state


_decoders: dict[str, msgspec.json.Decoder[Any]] = {}


def _decoder(topic: str) -> msgspec.json.Decoder[Any]:
    decoder = _decoders.get(topic)
    if decoder is None:
        decoder = _decoders[topic] = msgspec.json.Decoder(resolve_topic(topic))
    return decoder


def decode_stored(mapper: Mapper[Any], topic: str, state: bytes) -> DomainEvent:
    """Decrypt (when a cipher is configured), upcast if stored in an older shape, decode.

    Every reader of the store comes through here (this log's readers and the
    event store's mapper), so an old event never reaches code that expects
    the current shape (see events/upcasting.py).
    """
    event: DomainEvent = _decoder(topic).decode(current_json(topic, plaintext(mapper, state)))
    return event


class NotificationLogReader:
    def __init__(self, table: str, mapper: Mapper[Any]) -> None:
        self.table = table
        self.mapper = mapper
        # The table name is configuration, never input.
        self._select = (
            "SELECT notification_id, originator_id, originator_version, topic, state "  # noqa: S608
            f'FROM "{table}" WHERE notification_id > $1 ORDER BY notification_id LIMIT $2'
        )
        # Readers that want a few topics still page through every row (to know
        # how far they got) but fetch only the states they will decode.
        self._select_topics = (
            "SELECT notification_id, originator_id, originator_version, topic, "  # noqa: S608
            "CASE WHEN topic = ANY($3::text[]) THEN state END AS state "
            f'FROM "{table}" WHERE notification_id > $1 ORDER BY notification_id LIMIT $2'
        )
        # Replay and verification stop at a chosen notification id.
        bounded = "WHERE notification_id > $1 AND notification_id <= $3"
        self._select_upto = self._select.replace("WHERE notification_id > $1", bounded)
        self._select_topics_upto = self._select_topics.replace(
            "WHERE notification_id > $1", bounded.replace("$3", "$4")
        )

    @property
    def channel(self) -> str:
        """The LISTEN channel the recorder NOTIFYs on each insert."""
        return self.table.replace(".", "_")

    async def read(
        self,
        conn: DbConnection,
        after: int,
        limit: int,
        topics: Collection[str] | None = None,
        *,
        upto: int | None = None,
    ) -> Page:
        """Up to `limit` notifications after `after` (and up to `upto`), decoding `topics`.

        Decrypting and decoding is most of a reader's cost; events a reader
        ignores are skipped undecoded, yet still advance `last_id`.
        """
        if topics is None:
            rows = await (
                conn.fetch(self._select, after, limit)
                if upto is None
                else conn.fetch(self._select_upto, after, limit, upto)
            )
        elif upto is None:
            rows = await conn.fetch(self._select_topics, after, limit, list(topics))
        else:
            rows = await conn.fetch(self._select_topics_upto, after, limit, list(topics), upto)
        return Page(
            last_id=rows[-1]["notification_id"] if rows else after,
            scanned=len(rows),
            versions={row["originator_id"]: row["originator_version"] for row in rows},
            notifications=[
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    event=decode_stored(self.mapper, row["topic"], row["state"]),
                )
                for row in rows
                if topics is None or row["topic"] in topics
            ],
        )

    async def read_plain(
        self, conn: DbConnection, after: int, limit: int
    ) -> list[PlainNotification]:
        """Decrypted JSON in its current shape, undecoded: for the relay, which forwards it."""
        rows = await conn.fetch(self._select, after, limit)
        return [
            PlainNotification(
                id=row["notification_id"],
                topic=row["topic"],
                state=current_json(row["topic"], plaintext(self.mapper, row["state"])),
            )
            for row in rows
        ]

    async def max_id(self, conn: DbConnection) -> int:
        query = f'SELECT COALESCE(MAX(notification_id), 0) FROM "{self.table}"'  # noqa: S608 - our table
        value = await conn.fetchval(query)
        return int(value)

    async def read_stream(self, conn: DbConnection, originator_id: UUID) -> list[Notification]:
        """Every event of one aggregate, in its version order (for audits)."""
        rows = await conn.fetch(
            "SELECT notification_id, originator_id, originator_version, topic, state "  # noqa: S608
            f'FROM "{self.table}" WHERE originator_id = $1 ORDER BY originator_version',
            originator_id,
        )
        return [
            Notification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                event=decode_stored(self.mapper, row["topic"], row["state"]),
            )
            for row in rows
        ]
