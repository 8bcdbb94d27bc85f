"""Commits whose answer was lost: the database has the writes, the writer retried.

The retry recognises its own commit (`infra/eventstore.py`, `_retried`): a saga
step moves on without appending its events again, and the only answer to a
command's one delivery is not called a duplicate; a resend still is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import asyncpg
import pytest

from events.base import DomainEvent
from events.commands import CreateLink
from events.connection import ProviderLinked, SyncCompleted
from events.saga import SagaStepSucceeded
from infra.bootstrap import Runtime
from sagas.ports import SagaConflictError
from services.connections.domain import connection_id_for
from tests.integration.saga_helpers import saga_id, start_and_complete
from tests.support.harness import SPACE, Client, register, sync
from tests.support.lost_answers import CommitsThenDrops

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def answers_lost(runtime: Runtime, topic: str | None = None) -> CommitsThenDrops:
    """The store's next events insert (writing a `topic` event, if given) loses its answer."""
    dropper = CommitsThenDrops(runtime.store.pool, topic=topic)
    runtime.store.pool = cast("asyncpg.Pool", dropper)
    return dropper


async def test_a_saga_step_whose_commit_lost_its_answer_moves_on_without_a_conflict(
    syncyard: Runtime, upstream: Client, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = syncyard.sagas
    assert store is not None
    conflicts: list[SagaConflictError] = []
    append = store.append

    async def counting(events: Sequence[DomainEvent]) -> None:
        try:
            await append(events)
        except SagaConflictError as exc:
            conflicts.append(exc)
            raise

    monkeypatch.setattr(store, "append", counting)
    # The exchange's result is committed with the new link on the connection, and
    # that commit's answer is lost.
    dropper = answers_lost(syncyard, topic="ProviderLinked")

    state = await start_and_complete(upstream, store, sandbox, "acct-lost-1", "link-lost-1")

    assert not dropper.armed
    assert state.status == "completed", state
    # Its own step, recognised: not appended again, which conflicted and made the
    # holder let the saga go as if another holder had moved it on.
    assert conflicts == []
    events = await store.events(saga_id("link-lost-1"))
    succeeded = [e.step for e in events if isinstance(e, SagaStepSucceeded)]
    assert succeeded.count("exchange_token") == 1
    connection = await syncyard.store.events_after(connection_id_for(SPACE, "acct-lost-1"), 0)
    assert len([e for e in connection if isinstance(e, ProviderLinked)]) == 1


async def test_a_sync_whose_commit_lost_its_answer_is_answered_as_the_first_not_a_duplicate(
    syncyard: Runtime, sandbox: str
) -> None:
    assert (await syncyard.execute(register("acct-lost-2", "plaid"))).success
    dropper = answers_lost(syncyard)

    result = await syncyard.execute(sync("acct-lost-2", "sync-lost-2", count=5))

    assert not dropper.armed
    assert result.success, result.error
    assert not result.duplicate
    assert result.data is not None and result.data["entries"]
    events = await syncyard.store.events_after(connection_id_for(SPACE, "acct-lost-2"), 0)
    assert [e.command_id for e in events if isinstance(e, SyncCompleted)] == ["sync-lost-2"]
    # The caller sending it again is told so, with the same entries.
    again = await syncyard.execute(sync("acct-lost-2", "sync-lost-2", count=5))
    assert again.duplicate and again.data is not None
    assert again.data["entries"] == result.data["entries"]


async def test_a_registration_whose_commit_lost_its_answer_is_not_a_duplicate(
    syncyard: Runtime,
) -> None:
    dropper = answers_lost(syncyard)

    result = await syncyard.execute(register("acct-lost-3", "plaid"))

    assert not dropper.armed
    assert result.success and not result.duplicate
    again = await syncyard.execute(register("acct-lost-3", "plaid"))
    assert again.success and again.duplicate


async def test_a_link_creation_whose_commit_lost_its_answer_is_not_a_duplicate(
    syncyard: Runtime, sandbox: str
) -> None:
    create = CreateLink(command_id="link-lost-4", space_id=SPACE, account_id="acct-lost-4")
    dropper = answers_lost(syncyard)

    result = await syncyard.execute(create)

    assert not dropper.armed
    assert result.success and not result.duplicate, result
    assert result.data is not None and result.data["token"].startswith("link-sandbox-")
    again = await syncyard.execute(create)
    assert again.success and again.duplicate
