"""`syncyard audit saga ID`: a saga's steps, attempts, timers and compensations, as text.

ID is the saga's UUID (as `link.start` answered it), or SPACE_ID/COMMAND_ID of
the command that started it. `--json` prints what `GET /v1/sagas/{id}` serves.
"""

from __future__ import annotations

import argparse
import uuid

import msgspec

from events.base import DomainEvent
from sagas.state import saga_id_for
from sagas.view import saga_text, saga_view
from services.notification_log import DbConnection, NotificationLogReader, decode_stored


def saga_id_from(text: str) -> uuid.UUID:
    """A UUID, or SPACE_ID/COMMAND_ID of the start command."""
    if "/" in text:
        space_id, _, command_id = text.partition("/")
        return saga_id_for(space_id, command_id)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a saga UUID nor SPACE_ID/COMMAND_ID") from None


async def audit_saga(
    conn: DbConnection, reader: NotificationLogReader, args: argparse.Namespace
) -> int:
    try:
        saga_id = saga_id_from(args.id)
    except ValueError as exc:
        print(f"syncyard audit: {exc}")
        return 2
    rows = await conn.fetch(
        f'SELECT topic, state FROM "{reader.table}" '  # noqa: S608 - our table name
        "WHERE originator_id = $1 ORDER BY originator_version",
        saga_id,
    )
    events: list[DomainEvent] = [decode_stored(reader.mapper, r["topic"], r["state"]) for r in rows]
    if not events:
        print(f"syncyard audit: no saga {saga_id}")
        return 1
    schedule = await conn.fetchrow(
        "SELECT due_at, lease_owner, lease_until, wakes FROM syncyard_saga_schedule "
        "WHERE saga_id = $1",
        saga_id,
    )
    view = saga_view(events, dict(schedule) if schedule is not None else None)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(view), indent=2).decode())
    else:
        print(saga_text(view))
    return 0
