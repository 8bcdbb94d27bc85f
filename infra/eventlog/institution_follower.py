"""Keeps a replica's institution directory current with changes any replica records.

The handler updates its own replica's directory at once; this brings every
other replica's along within a NOTIFY (or `POLL_S` when one is missed).
"""

from __future__ import annotations

import asyncio

import asyncpg

from events.institutions import INSTITUTION_EVENT_TYPES
from infra.eventlog.listening import listening
from infra.eventlog.reader import NotificationLogReader
from infra.waiting import wait_for_either
from services.institutions.directory import InstitutionDirectory
from services.ports import topic_of

PAGE_SIZE = 1000
POLL_S = 1.0
TOPICS = frozenset(topic_of(cls) for cls in INSTITUTION_EVENT_TYPES)


class InstitutionFollower:
    """Feeds `directory` from the notification log after `position`.

    Start it from a position read *before* the directory was loaded: the
    directory ignores events it already holds, so overlap is harmless and
    nothing recorded in between is missed.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: NotificationLogReader,
        directory: InstitutionDirectory,
        *,
        position: int,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.directory = directory
        self.position = position
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        async with listening(self.pool, self.reader.channel, self._on_notify) as conn:
            while not stop.is_set():
                self._wake.clear()
                page = await self.reader.read(conn, self.position, PAGE_SIZE, TOPICS)
                for note in page.notifications:
                    self.directory.observe(note.event)
                self.position = page.last_id
                if page.scanned < PAGE_SIZE:
                    await wait_for_either(stop, self._wake, POLL_S)
