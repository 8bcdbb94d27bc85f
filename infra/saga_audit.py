"""`syncyard audit saga ID`: a saga's steps, attempts, timers and compensations, as text.

ID is the saga's UUID (as `link.start` answered it), or SPACE_ID/COMMAND_ID of
the command that started it. `--json` prints what `GET /v1/sagas/{id}` serves.
"""

from __future__ import annotations

import argparse
import uuid

import msgspec

from infra.saga_store import schedule_of
from sagas.state import saga_id_for
from sagas.view import saga_text, saga_view
from services.ports import DbConnection, LogReader


def saga_id_from(text: str) -> uuid.UUID:
    """A UUID, or SPACE_ID/COMMAND_ID of the start command."""
    if "/" in text:
        space_id, _, command_id = text.partition("/")
        return saga_id_for(space_id, command_id)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a saga UUID nor SPACE_ID/COMMAND_ID") from None


async def audit_saga(conn: DbConnection, reader: LogReader, args: argparse.Namespace) -> int:
    try:
        saga_id = saga_id_from(args.id)
    except ValueError as exc:
        print(f"syncyard audit: {exc}")
        return 2
    events = [note.event for note in await reader.read_stream(conn, saga_id)]
    if not events:
        print(f"syncyard audit: no saga {saga_id}")
        return 1
    view = saga_view(events, await schedule_of(conn, saga_id))
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(view), indent=2).decode())
    else:
        print(saga_text(view))
    return 0
