"""Replacing a connection's link at a provider shreds the credential it replaced (issue #14)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from events.base import DomainEvent
from events.commands import RegisterConnection
from events.connection import ProviderLinked
from events.credentials import CredentialForgotten, CredentialStored
from infra.bootstrap import Runtime
from infra.credential_keys import CredentialKeys, is_sealed, store_key
from services.connections.domain import connection_id_for, credential_id_for
from tests.support.harness import CIPHER_KEY, SPACE, register, sync

pytestmark = pytest.mark.integration


def _with_token(cmd: RegisterConnection, command_id: str, token: str) -> RegisterConnection:
    return msgspec.structs.replace(cmd, command_id=command_id, access_token=token)


async def _stream(runtime: Runtime, stream_id: uuid.UUID) -> list[DomainEvent]:
    assert runtime.sagas is not None
    return await runtime.sagas.events(stream_id)


async def _links(runtime: Runtime, account: str) -> list[ProviderLinked]:
    events = await runtime.store.events_after(connection_id_for(SPACE, account), 0)
    return [e for e in events if isinstance(e, ProviderLinked)]


async def _tokens_read_afresh(runtime: Runtime, account: str) -> list[str]:
    """The connection's tokens as a process that never saw them would read them."""
    runtime.store._tokens.clear()  # the store's in-memory copy of tokens
    state = await runtime.store.get_connection(connection_id_for(SPACE, account))
    assert state is not None
    return [link.access_token for link in await runtime.store.credentials(state)]


async def test_a_replaced_link_s_token_can_never_be_read_again_and_the_new_one_syncs(
    syncyard: Runtime,
) -> None:
    assert syncyard.store.keys is not None, "the test runtime seals tokens"
    account = "acct-replaced"
    old = _with_token(register(account, "plaid"), "reg-old", "access-sandbox-stolen-or-stale")
    new = register(account, "plaid", "reg-new")
    old_id, new_id = (
        credential_id_for(old.space_id, old.command_id),
        credential_id_for(new.space_id, new.command_id),
    )

    assert (await syncyard.execute(old)).success
    assert await syncyard.store.keys.keys_for([old_id])
    assert (await syncyard.execute(new)).success

    replacing = (await _links(syncyard, account))[-1]
    assert replacing.credential_id == new_id
    assert replacing.replaces_credential_id == old_id
    assert replacing.replaces_item_id == old.item_id
    assert await syncyard.store.keys.keys_for([old_id]) == {}
    stored, forgotten = await _stream(syncyard, old_id)
    assert isinstance(stored, CredentialStored) and is_sealed(stored.access_token)
    assert isinstance(forgotten, CredentialForgotten) and str(new_id) in forgotten.reason
    assert await _tokens_read_afresh(syncyard, account) == [new.access_token]
    synced = await syncyard.execute(sync(account, "sync-after-replace"))
    assert synced.success, synced.error


async def test_a_link_replaced_twice_keeps_only_the_last_token(syncyard: Runtime) -> None:
    assert syncyard.store.keys is not None
    account = "acct-replaced-twice"
    first = _with_token(register(account, "plaid"), "reg-1", "access-sandbox-first")
    second = _with_token(register(account, "plaid"), "reg-2", "access-sandbox-second")
    third = register(account, "plaid", "reg-3")
    for cmd in (first, second, third):
        assert (await syncyard.execute(cmd)).success
    # A redelivered old registration is a duplicate: it replaces nothing back.
    assert (await syncyard.execute(second)).duplicate

    ids = [credential_id_for(c.space_id, c.command_id) for c in (first, second, third)]
    assert list(await syncyard.store.keys.keys_for(ids)) == [ids[2]]
    replaced = [link.replaces_credential_id for link in await _links(syncyard, account)]
    assert replaced == [None, ids[0], ids[1]]
    for forgotten in ids[:2]:
        assert [type(e) for e in await _stream(syncyard, forgotten)] == [
            CredentialStored,
            CredentialForgotten,
        ]
    assert await _tokens_read_afresh(syncyard, account) == [third.access_token]


async def test_a_replacement_racing_a_compensation_s_forget_both_succeed_and_forget_once(
    syncyard: Runtime,
) -> None:
    assert syncyard.store.keys is not None
    account = "acct-replace-race"
    old = _with_token(register(account, "plaid"), "reg-race-old", "access-sandbox-racing")
    new = register(account, "plaid", "reg-race-new")
    old_id = credential_id_for(old.space_id, old.command_id)
    assert (await syncyard.execute(old)).success
    # What a link saga's forget_token appends for the same credential.
    forget = CredentialForgotten(
        originator_id=old_id,
        originator_version=2,
        timestamp=datetime.now(UTC),
        reason="link_deadline_passed",
    )

    outcomes = await asyncio.gather(
        syncyard.execute(new), syncyard.store.append([forget]), return_exceptions=True
    )

    result = outcomes[0]
    assert not isinstance(result, BaseException) and result.success
    assert outcomes[1] is None
    events = await _stream(syncyard, old_id)
    assert [type(e) for e in events] == [CredentialStored, CredentialForgotten]
    assert await syncyard.store.keys.keys_for([old_id]) == {}
    # Forgetting it again later (a retried compensation) is no conflict either.
    await syncyard.store.append([forget])
    assert len(await _stream(syncyard, old_id)) == 2
    assert await _tokens_read_afresh(syncyard, account) == [new.access_token]


async def test_a_key_table_of_an_earlier_version_is_adopted_and_keeps_tombstones(
    database_url: str,
) -> None:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        # The table as the first sealing release made it: keys NOT NULL, no shredded_at.
        await pool.execute(
            "CREATE TABLE syncyard_credential_keys (credential_id uuid PRIMARY KEY, "
            "wrapped_key bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        keys = CredentialKeys(pool, store_key(CIPHER_KEY))
        await asyncio.gather(keys.setup(), keys.setup())  # two replicas starting together
        credential_id = uuid.uuid4()
        assert await keys.key_for_new(credential_id) is not None

        await keys.shred(credential_id)

        assert await keys.keys_for([credential_id]) == {}
        assert await keys.key_for_new(credential_id) is None, "a shredded key never comes back"
