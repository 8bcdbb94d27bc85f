"""Read model `breakers`: every breaker's state as its last event left it.

One row per breaker: a provider's at one bank (`institution_id`, syncyard's
id) or its provider-wide one (`institution_id` null); why it opened (failed
calls, or the provider's own status report, and whose trouble that was); an
operator's hold (forced open or closed, by whom, until when, why). Each row
carries the id of the event that set it, so replay and live tailing agree.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from events.breaker import (
    BreakerClosed,
    BreakerForced,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerReleased,
)
from projections.engine import Projection
from projections.health_rules import BreakerState
from projections.row_types import Time
from services.ports import DbConnection, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS breakers (
    breaker_id uuid PRIMARY KEY,
    provider text NOT NULL,
    region text NOT NULL,
    institution_id text,
    last_event bigint NOT NULL,
    state text NOT NULL,
    since timestamptz NOT NULL,
    open_until timestamptz,
    reason text,
    source text,
    blame text,
    forced text,
    forced_by text,
    forced_until timestamptz
);
"""

_UPSERT = """
INSERT INTO breakers AS b VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (breaker_id) DO UPDATE SET
    last_event = EXCLUDED.last_event, state = EXCLUDED.state, since = EXCLUDED.since,
    open_until = EXCLUDED.open_until, reason = EXCLUDED.reason, source = EXCLUDED.source,
    blame = EXCLUDED.blame, forced = EXCLUDED.forced, forced_by = EXCLUDED.forced_by,
    forced_until = EXCLUDED.forced_until
WHERE b.last_event < EXCLUDED.last_event
"""

_EVENTS = (BreakerOpened, BreakerHalfOpened, BreakerClosed, BreakerForced, BreakerReleased)
Row = tuple[object, ...]


class BreakerRow(msgspec.Struct, frozen=True, kw_only=True):
    """One breaker: the provider's at one bank, or provider-wide (`institution_id` null).

    `source` says what opened it: `calls` (failures in its window) or
    `provider_status` (the provider reported the bank down; `blame` says whose
    trouble: `provider`, which a link elsewhere avoids, or `institution`, which
    every provider of that bank shares). `forced` is an operator's hold.
    """

    provider: str
    region: str
    institution_id: str | None
    state: BreakerState
    since: Time
    open_until: Time | None
    reason: str | None
    source: Literal["calls", "provider_status"] | None
    blame: Literal["provider", "institution"] | None
    forced: Literal["open", "closed"] | None
    forced_by: str | None
    forced_until: Time | None


def _row(note_id: int, e: object) -> Row | None:
    if not isinstance(e, _EVENTS):
        return None
    head = (e.originator_id, e.provider, e.region, e.institution_id, note_id)
    if isinstance(e, BreakerOpened):
        body: Row = ("open", e.timestamp, e.open_until, e.reason, e.source, e.blame)
        return (*head, *body, None, None, None)
    if isinstance(e, BreakerForced):
        state = "open" if e.state == "open" else "closed"
        until = e.until if e.state == "open" else None
        reason = f"held {e.state} by {e.actor}: {e.reason}"
        return (*head, state, e.timestamp, until, reason, None, None, e.state, e.actor, e.until)
    if isinstance(e, BreakerHalfOpened):
        return (*head, "half_open", e.timestamp, None, None, None, None, None, None, None)
    released = f"released by {e.actor}: {e.reason}" if isinstance(e, BreakerReleased) else None
    return (*head, "closed", e.timestamp, None, released, None, None, None, None, None)


class BreakersProjection(Projection):
    name = "breakers"
    schema = SCHEMA
    tables = ("breakers",)
    # BreakerProbeAdmitted is left out: it does not change the breaker's state.
    handles = _EVENTS

    async def apply_page(self, conn: DbConnection, notes: list[Notification]) -> None:
        rows: dict[object, Row] = {}
        for note in notes:
            row = _row(note.id, note.event)
            if row is not None:
                rows[row[0]] = row  # log order: the last event of a page wins
        if rows:
            await conn.executemany(_UPSERT, list(rows.values()))


_LIST = """
SELECT provider, region, institution_id, state, since, open_until, reason, source, blame,
       forced, forced_by, forced_until
FROM breakers
WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR region = $2)
      AND (NOT $3::boolean OR state <> 'closed' OR forced IS NOT NULL)
      AND ($4::text IS NULL
           OR (provider, region) > ($4, $5::text)
           OR ((provider, region) = ($4, $5::text) AND institution_id IS NOT NULL
               AND ($6::text IS NULL OR institution_id > $6)))
ORDER BY provider, region, institution_id NULLS FIRST
LIMIT $7
"""

# Where a breaker sorts: provider, region, then its bank (the provider-wide one first).
BreakerKey = tuple[str, str, str | None]


def breaker_key(row: BreakerRow) -> BreakerKey:
    """The row's place in `list_breakers`' order: what a next page starts after."""
    return (row.provider, row.region, row.institution_id)


async def list_breakers(
    conn: DbConnection,
    *,
    provider: str | None = None,
    region: str | None = None,
    not_closed: bool = False,
    after: BreakerKey | None = None,
    limit: int | None = None,
) -> list[BreakerRow]:
    """Every breaker that ever changed state (the others are closed), filtered.

    In the order of `breaker_key`; `after` and `limit` page through them (a
    keyset: a breaker added meanwhile neither repeats a row nor shifts one out).
    """
    first, second, third = after if after is not None else (None, None, None)
    rows = await conn.fetch(_LIST, provider, region, not_closed, first, second, third, limit)
    return [BreakerRow(**dict(r)) for r in rows]
