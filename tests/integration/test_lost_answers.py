"""Commits whose answer was lost: the database has the writes, the writer retried.

The retry recognises its own commit (`infra/eventstore.py`: `_retried` in the group
committer, `_save_one` when a request of a conflicting batch is saved alone, and
`put_unless_taken` for the breaker recorder and the institution store, both on the
library's path): a saga step moves on without appending its events again, and
the only answer to a command's one delivery is not called a duplicate; a resend
still is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

import asyncpg
import msgspec
import pytest

from events.base import DomainEvent
from events.commands import CreateLink, ForceBreaker, MapInstitution
from events.connection import ProviderLinked, SyncCompleted
from events.saga import SagaStarted, SagaStepSucceeded
from infra.bootstrap import Runtime
from infra.eventstore import ShreddingRecorder
from sagas.ports import SagaConflictError
from services.connections.domain import connection_id_for
from services.ports import Change, StreamConflictError
from tests.integration.saga_helpers import saga_id, start_and_complete
from tests.support.harness import SPACE, Client, register, stored_events, sync
from tests.support.lost_answers import CommitsThenDrops, LibraryCommitsThenDrops

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def answers_lost(runtime: Runtime, topic: str | None = None) -> CommitsThenDrops:
    """The store's next events insert (writing a `topic` event, if given) loses its answer."""
    dropper = CommitsThenDrops(runtime.store.pool, topic=topic)
    runtime.store.pool = cast("asyncpg.Pool", dropper)
    return dropper


def library_answers_lost(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, topic: str
) -> LibraryCommitsThenDrops:
    """The library's next insert writing a `topic` event loses its answer (the path of
    the breaker recorder and the institution store), and the library tries it again."""
    recorder = runtime.store.app.recorder
    assert isinstance(recorder, ShreddingRecorder)
    dropper = LibraryCommitsThenDrops(recorder.datastore.get_connection, topic=topic)
    monkeypatch.setattr(recorder.datastore, "get_connection", dropper.get_connection)
    return dropper


async def topics(database_url: str) -> list[str]:
    return [topic.rsplit(":", 1)[-1] for _, topic, _ in await stored_events(database_url)]


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


async def test_a_breaker_hold_whose_commit_lost_its_answer_is_not_a_duplicate(
    syncyard: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = ForceBreaker(
        command_id="hold-lost-1",
        space_id="ops",
        provider="plaid",
        state="open",
        duration_s=600,
        actor="ana@ops",
        reason="drill",
    )
    dropper = library_answers_lost(syncyard, monkeypatch, "BreakerForced")

    result = await syncyard.execute(hold)

    assert not dropper.armed
    assert result.success and not result.duplicate, result
    assert result.data is not None and result.data["forced"] == "open"
    assert syncyard.board.status("plaid", "US") == "open"
    assert (await topics(database_url)).count("BreakerForced") == 1
    again = await syncyard.execute(hold)
    assert again.success and again.duplicate
    assert (await topics(database_url)).count("BreakerForced") == 1


async def test_a_mapping_whose_commit_lost_its_answer_is_not_a_duplicate(
    syncyard: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    move = MapInstitution(
        command_id="map-lost-1",
        space_id="ops",
        institution_id="chase",
        region="US",
        providers=("mx", "plaid"),
        actor="ana@ops",
        reason="drill",
    )
    dropper = library_answers_lost(syncyard, monkeypatch, "InstitutionMappingChanged")

    result = await syncyard.execute(move)

    assert not dropper.armed
    assert result.success and not result.duplicate, result
    assert result.data is not None and result.data["changed"]
    assert result.data["providers"] == ["mx", "plaid"]
    assert (await topics(database_url)).count("InstitutionMappingChanged") == 1
    again = await syncyard.execute(move)
    assert again.success and again.duplicate
    assert (await topics(database_url)).count("InstitutionMappingChanged") == 1


async def test_a_sync_saved_alone_whose_commit_lost_its_answer_is_not_a_duplicate(
    syncyard: Runtime, sandbox: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await syncyard.execute(register("acct-lost-5", "plaid"))).success
    # A saga's holder that lost its race shares the sync's batch: the batch conflicts
    # and each of its requests is saved alone (`_save_one`), on the library's path.
    started = SagaStarted(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=datetime.now(UTC),
        kind="link",
        command_id="link-lost-5",
        space_id=SPACE,
        account_id="acct-lost-5",
        connection_id=uuid.uuid4(),
    )
    await syncyard.store.append([started])
    lost_race = msgspec.structs.replace(started, timestamp=datetime.now(UTC))
    store, commit = syncyard.store, syncyard.store.commit
    losers: list[BaseException | None] = []

    async def beside_a_lost_race(change: Change) -> list[DomainEvent]:
        monkeypatch.setattr(store, "commit", commit)  # once
        loser, recorded = await asyncio.gather(
            store.append([lost_race]), commit(change), return_exceptions=True
        )
        losers.append(loser)
        if isinstance(recorded, BaseException):
            raise recorded
        return recorded

    monkeypatch.setattr(store, "commit", beside_a_lost_race)
    # ... and the sync's own put there loses its answer; the library tries it again.
    dropper = library_answers_lost(syncyard, monkeypatch, "SyncCompleted")

    result = await syncyard.execute(sync("acct-lost-5", "sync-lost-5", count=5))

    assert not dropper.armed
    assert len(losers) == 1 and isinstance(losers[0], StreamConflictError)
    assert result.success and not result.duplicate, result
    assert result.data is not None and result.data["entries"]
    events = await syncyard.store.events_after(connection_id_for(SPACE, "acct-lost-5"), 0)
    assert [e.command_id for e in events if isinstance(e, SyncCompleted)] == ["sync-lost-5"]
    again = await syncyard.execute(sync("acct-lost-5", "sync-lost-5", count=5))
    assert again.duplicate and again.data is not None
    assert again.data["entries"] == result.data["entries"]
