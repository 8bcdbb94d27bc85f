"""One group committer for every writer: connections' changes and sagas' appends share it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from events.base import DomainEvent
from events.credentials import CredentialStored
from events.saga import SagaStarted
from infra.bootstrap import Runtime
from infra.credential_keys import is_sealed
from sagas.ports import SagaConflictError
from services.ports import StreamConflictError
from tests.support.harness import register

pytestmark = pytest.mark.integration


def _started(saga_id: uuid.UUID, account: str) -> SagaStarted:
    return SagaStarted(
        originator_id=saga_id,
        originator_version=1,
        timestamp=datetime.now(UTC),
        kind="link",
        command_id=f"link-{account}",
        space_id="s",
        account_id=account,
        connection_id=uuid.uuid4(),
    )


async def test_an_append_that_lost_the_race_fails_alone_and_the_rest_of_its_batch_is_recorded(
    syncyard: Runtime,
) -> None:
    moved_on = _started(uuid.uuid4(), "acct-a")
    await syncyard.store.append([moved_on])
    stale = _started(moved_on.originator_id, "acct-a")  # version 1 again: another holder won
    fresh = _started(uuid.uuid4(), "acct-b")

    outcomes = await asyncio.gather(
        syncyard.store.append([stale]),
        syncyard.store.append([fresh]),
        syncyard.execute(register("acct-c", "plaid")),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], StreamConflictError)
    assert outcomes[1] is None
    result = outcomes[2]
    assert not isinstance(result, BaseException) and result.success
    assert syncyard.sagas is not None
    assert await syncyard.sagas.events(fresh.originator_id) == [fresh]
    assert await syncyard.sagas.events(moved_on.originator_id) == [moved_on]


async def test_the_saga_store_reports_a_lost_race_as_a_saga_conflict(syncyard: Runtime) -> None:
    assert syncyard.sagas is not None
    started = _started(uuid.uuid4(), "acct-d")
    await syncyard.sagas.append([started])

    with pytest.raises(SagaConflictError):
        await syncyard.sagas.append([_started(started.originator_id, "acct-d")])


async def test_a_token_appended_through_the_committer_is_sealed_with_a_key_of_its_own(
    syncyard: Runtime,
) -> None:
    assert syncyard.store.keys is not None, "the test runtime seals tokens"
    credential = CredentialStored(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=datetime.now(UTC),
        provider="plaid",
        item_id="item-sealed",
        access_token="access-sandbox-sealed",
    )

    await syncyard.store.append([credential])

    assert syncyard.sagas is not None
    stored: list[DomainEvent] = await syncyard.sagas.events(credential.originator_id)
    assert len(stored) == 1 and isinstance(stored[0], CredentialStored)
    assert is_sealed(stored[0].access_token)
    assert stored[0].access_token != credential.access_token
