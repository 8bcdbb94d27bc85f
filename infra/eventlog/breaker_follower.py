"""Feeds the breaker board (and the live health view) from the notification log, and runs
the board's open-timeout timer; in a worker, also the institution directory.

One reader of the log per worker process (issue #13): the institution
directory's events come in the same pages, so the log is read, and LISTENed
for, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from uuid import UUID

import asyncpg

from events.breaker import BREAKER_EVENT_TYPES
from events.connection import ConnectionAttempted
from infra.eventlog.institution_follower import TOPICS as INSTITUTION_TOPICS
from infra.eventlog.institution_follower import InstitutionFollower
from infra.eventlog.listening import listening
from infra.eventlog.reader import NotificationLogReader
from infra.waiting import wait_for_either
from services.ports import topic_of
from services.resilience.board import BreakerBoard
from services.resilience.live_health import LiveHealth

# On start, read back this many notifications to refill the windows: enough
# for several minutes of calls at the rates in docs/BENCHMARKS.md.
LOOKBACK = 20_000
PAGE_SIZE = 1000
# Bounds how late an open breaker turns half-open, and how stale a missed
# NOTIFY can leave this replica.
TICK_S = 0.1

TOPICS = frozenset(topic_of(cls) for cls in (ConnectionAttempted, *BREAKER_EVENT_TYPES))


class BreakerFollower:
    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: NotificationLogReader,
        board: BreakerBoard,
        *,
        on_versions: Callable[[dict[UUID, int]], None] | None = None,
        health: LiveHealth | None = None,
        institutions: InstitutionFollower | None = None,
    ):
        self.pool = pool
        self.reader = reader
        self.board = board
        # The same events in the same order on every replica: the orchestrator's
        # provider order agrees across replicas that have read the same log.
        self.health = health
        # Also tells the event store's cache which streams other replicas moved on.
        self.on_versions = on_versions
        # The directory's own position is where its load left off: read from the
        # earlier of the two (the directory ignores what it already holds).
        self.institutions = institutions
        self.topics = TOPICS | (INSTITUTION_TOPICS if institutions is not None else frozenset())
        self.position = 0
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with listening(self.pool, self.reader.channel, self._on_notify) as conn:
            self.position = max(0, await self.reader.max_id(conn) - LOOKBACK)
            if self.institutions is not None:
                self.position = min(self.position, self.institutions.position)
            while not stop.is_set():
                self._wake.clear()
                page = await self.reader.read(conn, self.position, PAGE_SIZE, self.topics)
                for note in page.notifications:
                    if note.topic in INSTITUTION_TOPICS:
                        if self.institutions is not None:
                            self.institutions.directory.observe(note.event)
                        continue
                    await self.board.observe(note.event)
                    if self.health is not None:
                        self.health.observe(note.event)
                self.position = page.last_id
                if self.institutions is not None:
                    self.institutions.position = max(self.institutions.position, page.last_id)
                if self.on_versions is not None and page.versions:
                    self.on_versions(page.versions)
                await self.board.tick()
                if page.scanned < PAGE_SIZE:
                    await wait_for_either(stop, self._wake, TICK_S)
