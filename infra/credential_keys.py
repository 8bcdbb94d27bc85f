"""Crypto-shredding for access tokens: one data key per credential, destroyed to forget it.

The event store is append-only, so a `CredentialForgotten` event alone leaves
the token's ciphertext in the log, readable by anyone holding the store's key.
Here each credential gets its own random data key; the token is sealed with it
before the event is stored (inside the store's own encryption), and the key is
kept in `syncyard_credential_keys`, wrapped by the store's key. Forgetting the
credential deletes that row, in the transaction that records the forgetting
(a saga's compensation, or a new link replacing this one at its provider): the
sealed token left in the log can never be opened again, by us or by whoever
obtains a backup of the log later.

A sealed token reads `sealed:v1:<base64url(nonce ‖ ciphertext ‖ tag)>`, the
credential's id as associated data (a sealed token cannot be moved to another
credential). Tokens stored before sealing existed stay plain and readable.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from uuid import UUID

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_PREFIX = "sealed:v1:"
_NONCE = 12

# A shredded credential keeps its row as a tombstone (no key, when it was
# shredded), so a registration redelivered after the forgetting cannot make
# the credential a fresh key and bring its token back. Tables of earlier
# versions (keys NOT NULL, no shredded_at) are adopted on start.
SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_credential_keys (
    credential_id uuid PRIMARY KEY,
    wrapped_key bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    shredded_at timestamptz
);
ALTER TABLE syncyard_credential_keys ALTER COLUMN wrapped_key DROP NOT NULL;
ALTER TABLE syncyard_credential_keys ADD COLUMN IF NOT EXISTS shredded_at timestamptz;
"""

_SETUP_LOCK = 0x5_CEED_5

# Run by the event store's recorder in the transaction that records the
# credentials' `CredentialForgotten` (psycopg placeholders, not asyncpg's).
SHRED_IN_TRANSACTION = """
INSERT INTO syncyard_credential_keys (credential_id, wrapped_key, shredded_at)
SELECT unnest(%s::uuid[]), NULL, now()
ON CONFLICT (credential_id) DO UPDATE SET wrapped_key = NULL, shredded_at = now()
"""


def store_key(cipher_key: str) -> bytes:
    """The store's AES key (`SYNCYARD_CIPHER_KEY`, base64), which wraps the data keys."""
    key = base64.b64decode(cipher_key)
    if len(key) not in (16, 24, 32):
        raise ValueError("the cipher key must be 16, 24 or 32 bytes, base64-encoded")
    return key


def is_sealed(token: str) -> bool:
    return token.startswith(SEALED_PREFIX)


def _encrypt(key: bytes, plain: bytes, credential_id: UUID) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plain, credential_id.bytes)


def _decrypt(key: bytes, sealed: bytes, credential_id: UUID) -> bytes:
    return AESGCM(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], credential_id.bytes)


def seal(data_key: bytes, credential_id: UUID, token: str) -> str:
    sealed = _encrypt(data_key, token.encode(), credential_id)
    return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode()


def unseal(data_key: bytes, credential_id: UUID, token: str) -> str:
    sealed = base64.urlsafe_b64decode(token.removeprefix(SEALED_PREFIX))
    return _decrypt(data_key, sealed, credential_id).decode()


class CredentialKeys:
    """The data keys of the credentials still kept, wrapped by the store's key."""

    def __init__(self, pool: asyncpg.Pool, store_key: bytes) -> None:
        self.pool = pool
        self._store_key = store_key

    async def setup(self) -> None:
        # One replica at a time: replicas starting together would race in the
        # catalog over the CREATE and the ALTERs that adopt an earlier table.
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
            await conn.execute(SCHEMA)

    async def key_for_new(self, credential_id: UUID) -> bytes | None:
        """The credential's data key: made now, or the one a retried store already made.

        None when the credential was already forgotten: its key is gone for good.
        """
        fresh = os.urandom(32)
        wrapped = await self.pool.fetchval(
            "INSERT INTO syncyard_credential_keys (credential_id, wrapped_key) VALUES ($1, $2) "
            "ON CONFLICT (credential_id) DO UPDATE SET credential_id = EXCLUDED.credential_id "
            "RETURNING wrapped_key",
            credential_id,
            _encrypt(self._store_key, fresh, credential_id),
        )
        if wrapped is None:
            return None
        return _decrypt(self._store_key, bytes(wrapped), credential_id)

    async def keys_for(self, credential_ids: Sequence[UUID]) -> dict[UUID, bytes]:
        """The data keys still kept among `credential_ids` (a forgotten one has none)."""
        rows = await self.pool.fetch(
            "SELECT credential_id, wrapped_key FROM syncyard_credential_keys "
            "WHERE credential_id = ANY($1::uuid[]) AND wrapped_key IS NOT NULL",
            list(credential_ids),
        )
        return {
            row["credential_id"]: _decrypt(
                self._store_key, bytes(row["wrapped_key"]), row["credential_id"]
            )
            for row in rows
        }

    async def shred(self, credential_id: UUID) -> None:
        """Destroy the key: the credential's sealed token can never be opened again."""
        await self.pool.execute(SHRED_IN_TRANSACTION.replace("%s", "$1"), [credential_id])
