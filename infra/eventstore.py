"""The event store: eventsourcing's PostgreSQL recorder behind an asyncio face.

The library is synchronous, so every call into it runs in a worker thread.
Writes go through a group committer: changes that arrive while a save is in
flight are decided and saved together in the next transaction, which is what
lets the store keep up with many concurrent commands (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import asyncpg
import msgspec
from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Mapper,
    OperationalError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import Environment, get_topic, retry
from psycopg.sql import SQL, Identifier

from events.base import DomainEvent
from events.connection import ProviderLinked
from events.credentials import CredentialForgotten, CredentialStored
from events.upcasting import mark_version
from infra.credential_keys import SHRED_IN_TRANSACTION, CredentialKeys, is_sealed, seal, unseal
from infra.eventlog.reader import decode_stored
from infra.feed_index import IndexWithEvents, PostgresFeedIndex
from services.connections.domain import ConnectionState, fold
from services.ports import Change, EventStorePort, StreamConflictError
from services.providers.base import LinkCredentials
from services.resilience.board import BreakerRecorder
from services.resilience.domain import Breaker

log = logging.getLogger(__name__)

APPLICATION_NAME = "syncyard"
EVENTS_TABLE = f"{APPLICATION_NAME}_events"
MAX_BATCH = 256
CACHE_SIZE = 50_000


class MsgspecMapper(Mapper[UUID]):
    """Stores msgspec events as their JSON (less the stream id and version).

    The library's cipher, when configured, encrypts the whole stored state.
    """

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = get_topic(type(domain_event))
        # Versioned event types carry their version, so a later shape can upcast them.
        state = mark_version(topic, msgspec.json.encode(domain_event))
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=topic,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return decode_stored(self, stored_event.topic, stored_event.state)


class _NoTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError


class SyncyardApplication(Application[UUID]):
    name = APPLICATION_NAME

    def construct_mapper(self) -> Mapper[UUID]:
        return MsgspecMapper(
            transcoder=_NoTranscoder(),
            cipher=self.factory.cipher(),
            compressor=self.factory.compressor(),
        )


# Held while the library creates its tables and functions: replicas starting
# together on an empty database otherwise race in the catalog and crash
# ("tuple concurrently updated", duplicate pg_type rows).
SCHEMA_LOCK = 0x5_7E_C8


async def open_application(database_url: str, env: dict[str, str]) -> SyncyardApplication:
    """The eventsourcing application on `database_url`, one process at a time creating it."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
        try:
            return await asyncio.to_thread(SyncyardApplication, env)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)
    finally:
        await conn.close()


def store_mapper(cipher_key: str) -> Mapper[UUID]:
    """The store's mapper as `SyncyardApplication` builds it, for readers without one."""
    cipher = AESCipher(Environment(env={AESCipher.CIPHER_KEY: cipher_key}))
    return MsgspecMapper(transcoder=_NoTranscoder(), cipher=cipher)


# Our own key in the library's environment: libpq parameters (a query string)
# that every connection of the library's pool is opened with.
CONNECT_PARAMS = "POSTGRES_CONNECT_PARAMS"


class ShreddingRecorder(PostgresApplicationRecorder):
    """The library's recorder, which can destroy data keys in the transaction it records in.

    `put(events, shred=[credential ids])` deletes those credentials' keys
    (`infra/credential_keys.py`) and inserts the events in one transaction: a
    credential is forgotten, or replaced, together with its key's destruction,
    or neither happens and the caller tries again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The library's insert function takes no table lock (its other path does):
        # two writers (replicas, or the breaker recorder beside the group committer)
        # could then commit notification ids out of order, and the relay and the
        # projector, which read past the highest id they saw, would skip the lower
        # one for good. Locking the table in the function serialises the inserts,
        # as reader.py relies on; CREATE OR REPLACE updates earlier databases.
        locked = SQL(
            "CREATE OR REPLACE FUNCTION "
            "{schema}.{insert_events}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint "
            "LANGUAGE plpgsql "
            "AS "
            "$BODY$"
            "BEGIN"
            "    SET LOCAL lock_timeout = '{lock_timeout}s';"
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            "    NOTIFY {channel};"
            "    RETURN QUERY"
            "    INSERT INTO {schema}.{table} AS t ("
            "    originator_id, originator_version, topic, state)"
            "    SELECT originator_id, originator_version, topic, state"
            "    FROM unnest(events)"
            "    RETURNING notification_id;"
            "END;"
            "$BODY$"
        ).format(
            insert_events=Identifier(self.pg_function_name_insert_events),
            lock_timeout=self.datastore.lock_timeout,
            channel=Identifier(self.channel_name),
            event=Identifier(self.stored_event_type_name),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        self.sql_create_pg_function_insert_events = locked
        self.sql_create_statements[self.create_insert_function_statement_index] = locked

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        shred: Sequence[UUID] = kwargs.pop("shred", ())
        if not shred:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        shredded: Sequence[int] = self._insert_and_shred(stored_events, shred)
        return shredded

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_and_shred(
        self, stored_events: Sequence[StoredEvent], shred: Sequence[UUID]
    ) -> Sequence[int]:
        assert self.datastore.enable_db_functions, "library_env turns the insert function on"
        rows = [
            self.construct_pg_stored_event(
                originator_id=e.originator_id,
                originator_version=e.originator_version,
                topic=e.topic,
                state=e.state,
            )
            for e in stored_events
        ]
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SHRED_IN_TRANSACTION, (list(shred),))
            curs.execute(self.sql_invoke_pg_function_insert_events, (rows,))
            return [r[self.pg_function_name_insert_events] for r in curs.fetchall()]


class SyncyardPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, with DATABASE_URL's TLS settings kept.

    The library connects with separate host/port/user/password/dbname keys and
    has none for `sslmode` and its kin; they are added to its (not yet opened)
    pool's connection arguments here. Its recorder can shred data keys in the
    transaction it records in (`ShreddingRecorder`).
    """

    application_recorder_class = ShreddingRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        params = dict(parse_qsl(self.env.get(CONNECT_PARAMS) or "", keep_blank_values=True))
        if params:
            kwargs = self.datastore.pool.kwargs
            assert isinstance(kwargs, dict), "the library passes its connection arguments as a dict"
            kwargs.update(params)


def library_env(pg: dict[str, str], cipher_key: str) -> dict[str, str]:
    """The eventsourcing library's configuration keys for our PostgreSQL."""
    return {
        "PERSISTENCE_MODULE": get_topic(SyncyardPostgresFactory),
        CONNECT_PARAMS: pg.get("params", ""),
        "POSTGRES_DBNAME": pg["dbname"],
        "POSTGRES_HOST": pg["host"],
        "POSTGRES_PORT": pg["port"],
        "POSTGRES_USER": pg["user"],
        "POSTGRES_PASSWORD": pg.get("password", ""),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "POSTGRES_LOCK_TIMEOUT": "5",
        "CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher",
        "CIPHER_KEY": cipher_key,
        "CREATE_TABLE": "y",
    }


class _Pending(msgspec.Struct):
    """One writer's request: a change to decide on a connection, or events to append as they are."""

    change: Change | None
    events: Sequence[DomainEvent]
    future: asyncio.Future[list[DomainEvent]]


class PostgresEventStore(EventStorePort):
    """EventStorePort on eventsourcing + PostgreSQL, with group commit and a state cache."""

    def __init__(
        self,
        app: SyncyardApplication,
        pool: asyncpg.Pool,
        *,
        keys: CredentialKeys | None = None,
        now: Callable[[], datetime] | None = None,
    ):
        self.app = app
        self.pool = pool
        # Without keys, tokens are stored under the store's encryption alone (and
        # a forgotten one stays in the log); with them, each is sealed and shreddable.
        self.keys = keys
        self._read_after = (
            "SELECT topic, state FROM "  # noqa: S608 - our table name, never input
            f'"{EVENTS_TABLE}" WHERE originator_id = $1 AND originator_version > $2 '
            "ORDER BY originator_version"
        )
        recorder = app.recorder
        assert isinstance(recorder, ShreddingRecorder), "SyncyardPostgresFactory makes it"
        schema, function = recorder.datastore.schema, recorder.pg_function_name_insert_events
        self._insert_events_sql = (
            f'SELECT * FROM "{schema}"."{function}"($1::"{schema}".'  # noqa: S608 - our names
            f'"{recorder.stored_event_type_name}"[])'
        )
        # Set by the runtime: the feed index whose rows the committer writes with
        # the events they come from (one statement, one commit, per batch).
        self.feed_index: PostgresFeedIndex | None = None
        self._now = now or (lambda: datetime.now(UTC))
        self._cache: OrderedDict[UUID, ConnectionState] = OrderedDict()
        self._tokens: dict[UUID, str] = {}
        self._cache_lock = threading.Lock()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._committer: asyncio.Task[None] | None = None
        self.batches_saved = 0
        self.changes_saved = 0
        self.seconds_saving = 0.0

    @property
    def mapper(self) -> Mapper[UUID]:
        return self.app.mapper

    async def __aenter__(self) -> PostgresEventStore:
        self._committer = asyncio.create_task(self._run_committer(), name="group-committer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._committer is not None:
            self._committer.cancel()
            await asyncio.gather(self._committer, return_exceptions=True)
        await asyncio.to_thread(self.app.close)

    # -- reads ---------------------------------------------------------------
    async def get_connection(self, connection_id: UUID) -> ConnectionState | None:
        """The connection as this replica knows it: cached, or loaded.

        Another replica's appends evict the cached state as soon as this
        replica's log follower sees them (`observe_versions`, milliseconds); a
        decision made on a state that old is caught at commit by the version
        check, and re-decided on fresh state.
        """
        cached = self._cache.get(connection_id)
        if cached is not None:
            return cached
        rows = await self.pool.fetch(self._read_after, connection_id, 0)
        if not rows:
            return cached
        state = fold(cached, (decode_stored(self.mapper, r["topic"], r["state"]) for r in rows))
        if state is not None:
            self._remember(state)
        return state

    async def events_after(self, stream_id: UUID, version: int) -> list[DomainEvent]:
        rows = await self.pool.fetch(self._read_after, stream_id, version)
        return [decode_stored(self.mapper, r["topic"], r["state"]) for r in rows]

    def _load(self, connection_id: UUID) -> ConnectionState | None:
        state = fold(None, self.app.events.get(connection_id))  # type: ignore[arg-type]
        if state is not None:
            self._remember(state)
        return state

    def _remember(self, state: ConnectionState) -> None:
        # Readers and the committer run in different threads: never let an
        # older read overwrite a newer committed state.
        with self._cache_lock:
            cached = self._cache.get(state.id)
            if cached is not None and cached.version > state.version:
                return
            self._cache[state.id] = state
            self._cache.move_to_end(state.id)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    def observe_versions(self, versions: dict[UUID, int]) -> None:
        """Streams other replicas moved past what this cache holds: drop them."""
        with self._cache_lock:
            for stream_id, version in versions.items():
                cached = self._cache.get(stream_id)
                if cached is not None and cached.version < version:
                    del self._cache[stream_id]

    def forget(self, connection_id: UUID) -> None:
        with self._cache_lock:
            self._cache.pop(connection_id, None)

    async def credentials(self, state: ConnectionState) -> list[LinkCredentials]:
        missing = [link.credential_id for link in state.links.values()]
        missing = [cid for cid in missing if cid not in self._tokens]
        if missing:
            keys = await self.keys.keys_for(missing) if self.keys is not None else {}
            await asyncio.to_thread(self._load_tokens, missing, keys)
        return [
            LinkCredentials(
                provider=link.provider,
                item_id=link.item_id,
                access_token=self._tokens[link.credential_id],
            )
            for link in state.links.values()
            if link.credential_id in self._tokens
        ]

    def _load_tokens(self, credential_ids: Sequence[UUID], keys: Mapping[UUID, bytes]) -> None:
        for credential_id in credential_ids:
            for event in self.app.events.get(credential_id):
                if isinstance(event, CredentialStored):
                    token: str | None = event.access_token
                    if is_sealed(event.access_token):
                        key = keys.get(credential_id)
                        # No key: the credential was forgotten and its key shredded.
                        token = (
                            None if key is None else unseal(key, credential_id, event.access_token)
                        )
                    if token is None:
                        self._tokens.pop(credential_id, None)
                    else:
                        self._tokens[credential_id] = token
                elif isinstance(event, CredentialForgotten):
                    self._tokens.pop(credential_id, None)

    # -- writes --------------------------------------------------------------
    async def commit(self, change: Change) -> list[DomainEvent]:
        plain: dict[UUID, str] = {}
        if self.keys is not None and change.side_events:
            side = await self._sealed(change.side_events, self.keys, plain)
            change = msgspec.structs.replace(change, side_events=tuple(side))
        recorded = await self._enqueue(change, ())
        if recorded:  # the side events were saved with them: a new link's first sync
            self._tokens.update(plain)  # should not have to read its token back
        return recorded

    async def append(self, events: Sequence[DomainEvent]) -> None:
        # The same committer as connections' changes: one writer per process, so
        # a saga step and the syncs it starts share transactions instead of
        # queueing for the events table's lock one by one.
        plain: dict[UUID, str] = {}
        if self.keys is not None:
            events = await self._sealed(events, self.keys, plain)
        await self._enqueue(None, events)
        self._tokens.update(plain)

    async def _enqueue(
        self, change: Change | None, events: Sequence[DomainEvent]
    ) -> list[DomainEvent]:
        future: asyncio.Future[list[DomainEvent]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(change=change, events=events, future=future))
        return await future

    @staticmethod
    async def _sealed(
        events: Sequence[DomainEvent], keys: CredentialKeys, plain: dict[UUID, str]
    ) -> list[DomainEvent]:
        """Seal new tokens with their credential's own key (`_put` shreds forgotten ones)."""
        side: list[DomainEvent] = []
        for event in events:
            if isinstance(event, CredentialStored) and not is_sealed(event.access_token):
                credential_id = event.originator_id
                key = await keys.key_for_new(credential_id)
                if key is None:
                    # Forgotten already (an old registration redelivered): whatever
                    # is stored is sealed with a key nobody keeps.
                    key = os.urandom(32)
                else:
                    plain[credential_id] = event.access_token
                sealed = seal(key, credential_id, event.access_token)
                side.append(msgspec.structs.replace(event, access_token=sealed))
                continue
            side.append(event)
        return side

    async def _run_committer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = time.perf_counter()
            try:
                outcomes = await self._save_batch(batch)
            except Exception as exc:  # the whole batch failed: each caller decides what to do
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            self.seconds_saving += time.perf_counter() - started
            self.changes_saved += len(batch)
            for pending, result in zip(batch, outcomes, strict=True):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    def _decide(
        self, batch: Sequence[_Pending], states: dict[UUID, ConnectionState | None]
    ) -> list[list[DomainEvent]]:
        """What each request records: its change's decision with its side events, or its events.

        `states` holds the state of every connection the batch changes (`_states_for`).
        """
        decided: list[list[DomainEvent]] = []
        for pending in batch:
            change = pending.change
            if change is None:
                decided.append(list(pending.events))
                continue
            state = states[change.connection_id]
            events = change.decide(state)
            states[change.connection_id] = fold(state, events)
            decided.append(events)
        return decided

    @staticmethod
    def _recorded(batch: Sequence[_Pending], decided: list[list[DomainEvent]]) -> list[DomainEvent]:
        """Everything the batch writes: a change's side events only if it decided something."""
        written: list[DomainEvent] = []
        for pending, events in zip(batch, decided, strict=True):
            written.extend(events)
            if pending.change is not None and events:
                written.extend(pending.change.side_events)
        return written

    async def _states_for(self, batch: Sequence[_Pending]) -> dict[UUID, ConnectionState | None]:
        """The state of each connection the batch changes: cached, or read from the log."""
        states: dict[UUID, ConnectionState | None] = {}
        for pending in batch:
            if pending.change is None or pending.change.connection_id in states:
                continue
            connection_id = pending.change.connection_id
            cached = self._cache.get(connection_id)
            states[connection_id] = (
                cached if cached is not None else await self.get_connection(connection_id)
            )
        return states

    async def _save_batch(
        self, batch: Sequence[_Pending]
    ) -> list[list[DomainEvent] | BaseException]:
        states = await self._states_for(batch)
        decided = self._decide(batch, states)
        index = None
        if self.feed_index is not None:
            changed = zip(batch, decided, strict=True)
            index = self.feed_index.with_events(
                [(p.change.connection_id, e) for p, e in changed if p.change and e]
            )
        try:
            indexed = await self._put_async(self._recorded(batch, decided), index)
        except IntegrityError:
            # Another replica appended to one of these streams: our cached states
            # were stale, or a saga's holder lost the race. Retry each request alone
            # (changes on freshly loaded state), so only the conflicting one fails.
            # Or our own batch went in and its answer was lost with the connection
            # (`_put_async`): each request that finds exactly what it decided
            # recorded gets that back, as if the answer had come.
            for connection_id in states:
                self.forget(connection_id)
            return await asyncio.to_thread(
                lambda: [self._retried(p, d) for p, d in zip(batch, decided, strict=True)]
            )
        self.batches_saved += 1
        if indexed and index is not None and self.feed_index is not None:
            self.feed_index.indexed_with_events(index.records)
        for state in states.values():
            if state is not None:
                self._remember(state)
        return list(decided)

    async def _put_async(
        self, events: list[DomainEvent], index: IndexWithEvents | None = None
    ) -> bool:
        """`_put` without a thread: the batch's events in one statement over asyncpg.

        The library's own insert (psycopg, in a worker thread) spent most of a
        batch's time turning the rows into a text array of composites in Python,
        while holding the GIL the event loop needs; asyncpg encodes the same
        array in C, and the statement is the library's insert function, so the
        table lock and the notification are the same. A batch that forgets a
        credential, and any failure other than a conflict, take the library's
        path (`_put`): it shreds keys in the transaction and retries a lost
        connection. A retry after a commit whose answer was lost conflicts on
        the versions it wrote; each request then finds its own events recorded
        and gets them back (`_retried`), as if the answer had come.

        `index`: feed index rows written in the same statement. Returns whether
        they were; when not, each sync indexes its own (`FeedIndexPort.record`).
        """
        if not events:
            return False
        if _forgets_any(events):
            await asyncio.to_thread(self._put, events)
            return False
        mapper = self.mapper
        rows = [
            (s.originator_id, s.originator_version, s.topic, s.state)
            for s in map(mapper.to_stored_event, events)
        ]
        try:
            if index is None:
                await self.pool.fetch(self._insert_events_sql, rows)
            else:
                statement = index.statement(self._insert_events_sql)
                await self.pool.fetch(statement, rows, *index.arguments)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if isinstance(exc, asyncpg.UniqueViolationError) and exc.table_name == EVENTS_TABLE:
                raise IntegrityError(str(exc)) from exc
            # Anything else (the library's path reports a conflict the same way):
            log.warning("event insert failed; trying again the library's way", exc_info=True)
            await asyncio.to_thread(self._put, events)
            return False
        self._cache_new_tokens(events)
        return index is not None

    def _cache_new_tokens(self, events: Sequence[DomainEvent]) -> None:
        # A new link's first sync should not have to read its token back.
        for event in events:
            if isinstance(event, CredentialStored) and not is_sealed(event.access_token):
                self._tokens[event.originator_id] = event.access_token

    def _put(self, events: list[DomainEvent]) -> None:
        # EventStore.put, not Application.save: save() runs a typing.Protocol
        # isinstance check per event, which cost a sixth of a batch's time, and
        # its snapshot and notify hooks are unused here.
        if events:
            self._put_kept(*self._forgetting(events))

    def _put_kept(self, events: list[DomainEvent], shred: list[UUID]) -> None:
        """`_put` after `_forgetting`: `events` as they are put, `shred` the keys destroyed."""
        if shred and self.keys is not None:
            self.app.events.put(events, shred=shred)
        else:
            self.app.events.put(events)
        self._put_done(events, shred)

    def _put_done(self, events: Sequence[DomainEvent], shred: Sequence[UUID]) -> None:
        self._cache_new_tokens(events)
        for credential_id in shred:
            self._tokens.pop(credential_id, None)

    def _forgetting(self, events: list[DomainEvent]) -> tuple[list[DomainEvent], list[UUID]]:
        """The events with each replaced credential forgotten, each credential forgotten once.

        A link replaced at its provider (`ProviderLinked.replaces_credential_id`)
        forgets the old credential here, in the same transaction. Forgetting is
        idempotent: a credential already forgotten (a replacement and a saga's
        compensation racing, a retried compensation) is not forgotten twice,
        which would conflict on its stream's version 2. Returns the events to
        put and the credentials whose data keys go with them.
        """
        forgets: dict[UUID, DomainEvent | None] = {}
        for event in events:
            if isinstance(event, CredentialForgotten):
                forgets.setdefault(event.originator_id, None)
            elif isinstance(event, ProviderLinked) and event.replaces_credential_id is not None:
                forgets.setdefault(
                    event.replaces_credential_id,
                    CredentialForgotten(
                        originator_id=event.replaces_credential_id,
                        originator_version=2,
                        timestamp=event.timestamp,
                        metadata=event.metadata,
                        reason=f"replaced by credential {event.credential_id}",
                    ),
                )
        if not forgets:
            return events, []
        done = {cid for cid in forgets if self.app.recorder.select_events(cid, gt=1, limit=1)}
        kept: list[DomainEvent] = []
        seen: set[UUID] = set()
        for event in events:
            if isinstance(event, CredentialForgotten):
                if event.originator_id in done or event.originator_id in seen:
                    continue
                seen.add(event.originator_id)
            kept.append(event)
        kept.extend(
            derived
            for cid, derived in forgets.items()
            if derived is not None and cid not in done and cid not in seen
        )
        return kept, list(forgets)

    def _already_recorded(self, events: Sequence[DomainEvent]) -> bool:
        return already_recorded(self.app, events)

    def _retried(
        self, pending: _Pending, decided: list[DomainEvent]
    ) -> list[DomainEvent] | BaseException:
        """One request of a batch that conflicted, alone; `decided`: what the batch decided.

        If exactly that is recorded, the batch was ours and only its answer was
        lost: the request gets what it decided, not a decision taken again on the
        state its own commit made (which finds its command already recorded: a
        handler would answer a duplicate, a saga append its step again).
        """
        change = pending.change
        if (
            change is not None
            and decided
            and self._already_recorded([*decided, *change.side_events])
        ):
            return decided
        return self._save_one(pending)

    def _save_one(self, pending: _Pending) -> list[DomainEvent] | BaseException:
        """One request alone, on the library's path (which retries a lost connection).

        A change is decided on the connection's fresh state and decided again when
        another writer took its versions; not when exactly what it put is stored,
        which is its own commit whose answer was lost.
        """
        change = pending.change
        if change is None:
            for attempt in range(2):
                try:
                    self._put(list(pending.events))
                except IntegrityError as exc:
                    # Once more: a credential forgotten meanwhile by another writer
                    # is left out the second time; any other conflict stays one.
                    if attempt == 0 and _forgets_any(pending.events):
                        continue
                    if self._already_recorded(pending.events):
                        break  # our own commit, whose answer was lost with its connection
                    return StreamConflictError(str(exc))
                except Exception as exc:
                    return exc
                break
            return list(pending.events)
        for _ in range(5):
            state = self._load(change.connection_id)
            events = change.decide(state)
            # What is put, as put: `_forgetting` adds the CredentialForgotten of a
            # replaced credential and leaves out one forgotten already.
            put: list[DomainEvent] = []
            shred: list[UUID] = []
            try:
                put, shred = self._forgetting([*events, *(change.side_events if events else ())])
                if put:
                    self._put_kept(put, shred)
            except IntegrityError:
                # The library tries a lost connection again: when the first try's
                # COMMIT went in, the retry conflicts with our own write. Exactly what
                # we put, stored, is ours, and recorded: deciding again would find the
                # command recorded (a duplicate answer, a saga step appended again).
                if not (put and self._already_recorded(put)):
                    self.forget(change.connection_id)
                    continue
                self._put_done(put, shred)
            except Exception as exc:
                return exc
            new_state = fold(state, events)
            if new_state is not None:
                self._remember(new_state)
            return events
        return RuntimeError(f"connection {change.connection_id}: kept conflicting after 5 tries")


def already_recorded(app: SyncyardApplication, events: Sequence[DomainEvent]) -> bool:
    """Whether the store holds exactly these events at their versions: a commit of
    ours whose answer was lost, not another writer's (whose events would differ,
    in their time if nothing else)."""
    for stream_id, ours in _by_stream(events).items():
        first, last = ours[0].originator_version, ours[-1].originator_version
        stored = list(app.events.get(stream_id, gt=first - 1, lte=last))
        if stored != ours:
            return False
    return True


def put_unless_taken(app: SyncyardApplication, events: Sequence[DomainEvent]) -> bool:
    """Record `events` on the library's path; False when another writer took their versions.

    The library tries a lost connection again. When the first try's COMMIT went
    in and only its answer was lost, the second conflicts with our own write:
    finding exactly these events stored, it is ours, and recorded (True), not
    another writer's win (which a caller would answer as a duplicate, or decide
    again on, or report as a conflict).
    """
    try:
        app.events.put(list(events))
    except IntegrityError:
        return already_recorded(app, events)
    return True


def _by_stream(events: Sequence[DomainEvent]) -> dict[UUID, list[DomainEvent]]:
    streams: dict[UUID, list[DomainEvent]] = {}
    for event in events:
        streams.setdefault(event.originator_id, []).append(event)
    return streams


def _forgets_any(events: Sequence[DomainEvent]) -> bool:
    return any(
        isinstance(e, CredentialForgotten)
        or (isinstance(e, ProviderLinked) and e.replaces_credential_id is not None)
        for e in events
    )


class PostgresBreakerRecorder(BreakerRecorder):
    """Breaker transitions straight into the event store: rare, so no group commit.

    A transition whose commit lost its answer is recognised as recorded
    (`put_unless_taken`), so a hold is answered as the first, not a duplicate.
    """

    def __init__(self, app: SyncyardApplication) -> None:
        self.app = app

    async def append(self, events: list[DomainEvent]) -> bool:
        return await asyncio.to_thread(put_unless_taken, self.app, events)

    async def load(self, breaker: Breaker) -> list[DomainEvent]:
        return await asyncio.to_thread(lambda: list(self.app.events.get(breaker.id)))  # type: ignore[arg-type]
