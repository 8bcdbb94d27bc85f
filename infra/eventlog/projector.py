"""The live projector: tails the log into the read models, woken by NOTIFY, paging to catch up.

The read models and how a page is applied live in `projections/`; this is the
loop around them that a process runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from infra.eventlog.listening import listening
from infra.eventlog.reader import NotificationLogReader
from infra.waiting import wait_for_either
from projections.engine import (
    PAGE_SIZE,
    POSITIONS,
    Projection,
    ProjectionVersionError,
    apply_next_page,
    cohorts,
    migrate,
)
from projections.lag import projection_lag, record_live_lag, register_lag_gauge

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
LAG_EVERY_S = 1.0  # how often a projector refreshes its lag gauge


class Projector:
    """Tails the log into the live read models: woken by NOTIFY, catching up by pages.

    The read models share each page: one read, one decode and one transaction
    for all of them, rather than one each (on the worker's process, where the
    projector runs under `make run`, those rounds cost the commands' latency).
    A read model far behind the others (rebuilding from zero after a version
    change) catches up beside them, on its own connection.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        reader: NotificationLogReader,
        projections: list[Projection],
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.pool = pool
        self.reader = reader
        self.projections = projections
        self.page_size = page_size
        self._wake = asyncio.Event()
        self._lag_measured_at = 0.0
        self._cohorts: list[list[Projection]] | None = None
        register_lag_gauge()

    async def catch_up_once(self, projections: Sequence[Projection]) -> int:
        """Apply one shared page to `projections`; returns how many ids it moved past."""
        async with self.pool.acquire() as conn:
            return await apply_next_page(conn, self.reader, projections, page_size=self.page_size)

    async def _catch_up_cohort(self, projections: Sequence[Projection]) -> int:
        total = 0
        while True:
            try:
                read = await self.catch_up_once(projections)
            except ProjectionVersionError as exc:
                # A newer replica took these over (rolling deploy): this one stops
                # writing them and goes on with the rest.
                log.warning("%s: this projector leaves them to the replicas that run it", exc)
                self.projections = [p for p in self.projections if p.name not in exc.names]
                self._cohorts = None
                return total
            total += read
            # Fewer ids than a page: the page was not full, nothing more is waiting.
            if read < self.page_size:
                return total

    async def positions(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            f"SELECT projection, position FROM {POSITIONS} WHERE projection = ANY($1::text[])",  # noqa: S608
            [p.name for p in self.projections],
        )
        return {row["projection"]: int(row["position"]) for row in rows}

    async def current_cohorts(self) -> list[list[Projection]]:
        # Positions drift apart only when `migrate` resets one, so once every read
        # model shares one cohort there is nothing more to look up.
        if self._cohorts is None or len(self._cohorts) > 1:
            self._cohorts = cohorts(self.projections, await self.positions(), self.page_size)
        return self._cohorts

    async def catch_up(self) -> int:
        """Apply everything stored so far to every projection."""
        groups = await self.current_cohorts()
        # A TaskGroup, not gather: one cohort failing stops the other before the
        # supervisor restarts the projector.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._catch_up_cohort(c)) for c in groups]
        done = [task.result() for task in tasks]
        now = asyncio.get_running_loop().time()
        if now - self._lag_measured_at >= LAG_EVERY_S:
            self._lag_measured_at = now
            await self.measure_lag()
        return sum(done)

    async def measure_lag(self) -> None:
        """Refresh the lag gauge's values (the projector does so at most once a second)."""
        mine = {p.name for p in self.projections}
        async with self.pool.acquire() as conn:
            rows = await projection_lag(conn, events_table=self.reader.table)
            record_live_lag({r["projection"]: r["behind"] for r in rows if r["projection"] in mine})
            for projection in self.projections:
                await projection.refresh_metrics(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await migrate(self.pool, self.projections, skip_newer=True)
        self._cohorts = None
        async with listening(self.pool, self.reader.channel, self._on_notify):
            while not stop.is_set():
                self._wake.clear()
                if await self.catch_up() == 0:
                    await wait_for_either(stop, self._wake, POLL_INTERVAL_S)
