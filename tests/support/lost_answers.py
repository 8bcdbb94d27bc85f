"""A database whose commit's answer is lost: the writes are in, the writer does not know.

Two ways in: the store's asyncpg pool (`CommitsThenDrops`, the group committer's
path) and the eventsourcing library's psycopg datastore (`LibraryCommitsThenDrops`,
the path of the breaker recorder and the institution store, which the library
tries again after a lost connection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import asyncpg
import psycopg
from psycopg.sql import Composable


class ArmedDrop:
    """Which insert loses its answer: the next one, or the next writing a `topic` event
    (a part of its topic, e.g. `ProviderLinked`); once, then disarmed."""

    def __init__(self, *, topic: str | None = None) -> None:
        self.topic = topic
        self.armed = True

    def drops(self, sql: str, topics: Iterable[str]) -> bool:
        """Whether this statement's answer is the one lost (then disarmed)."""
        if not self.armed or "es_insert_events" not in sql:
            return False
        if self.topic is not None and not any(self.topic in topic for topic in topics):
            return False
        self.armed = False
        return True


class CommitsThenDrops(ArmedDrop):
    """The store's pool, whose next events insert (writing a `topic` event, if given)
    commits and then loses its answer."""

    def __init__(self, pool: asyncpg.Pool, *, topic: str | None = None) -> None:
        super().__init__(topic=topic)
        self.pool = pool

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        rows = await self.pool.fetch(sql, *args)
        events = args[0] if args and isinstance(args[0], list) else []
        if self.drops(sql, (str(row[2]) for row in events)):
            raise asyncpg.ConnectionDoesNotExistError("connection lost after the commit")
        return rows

    def __getattr__(self, name: str) -> object:
        return getattr(self.pool, name)


Connections = Callable[[], AbstractContextManager[Any]]


class LibraryCommitsThenDrops(ArmedDrop):
    """The library's datastore, whose next events insert (writing a `topic` event, if
    given) commits and then loses its answer.

    Put its `get_connection` in place of the datastore's (`monkeypatch.setattr`).
    The insert's statement runs (autocommit: it is in) and then the connection
    is said lost, which the library reports as its OperationalError and retries.
    """

    def __init__(self, connections: Connections, *, topic: str | None = None) -> None:
        super().__init__(topic=topic)
        self._connections = connections

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        with self._connections() as conn:
            yield _Connection(conn, self)


class _Connection:
    def __init__(self, conn: Any, drop: ArmedDrop) -> None:
        self._conn = conn
        self._drop = drop

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._conn, self._conn.cursor(*args, **kwargs), self._drop)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _Cursor:
    def __init__(self, conn: Any, curs: Any, drop: ArmedDrop) -> None:
        self._conn = conn
        self._curs = curs
        self._drop = drop

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _Cursor:
        self._curs.execute(query, params, **kwargs)
        sql = query.as_string(self._conn) if isinstance(query, Composable) else str(query)
        rows = params[0] if params and isinstance(params[0], list) else []
        if self._drop.drops(sql, (str(getattr(row, "topic", "")) for row in rows)):
            raise psycopg.OperationalError("connection lost after the commit")
        return self

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self._curs.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._curs, name)
