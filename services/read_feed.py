"""`feed.read`: an account's feed entries after a position, from what syncyard recorded."""

from __future__ import annotations

import msgspec

from events.commands import ReadFeed
from events.feed import FeedPage
from events.results import CommandResult
from services.connections.domain import connection_id_for
from services.dependencies import Dependencies, refused


async def read_feed(deps: Dependencies, cmd: ReadFeed, trace: dict[str, str]) -> CommandResult:
    """Entries after `since`, at most `limit`; `has_more` while the feed goes on.

    No provider is called and nothing is recorded: the same read answers the
    same entries, however often it is sent.
    """
    connection_id = connection_id_for(cmd.space_id, cmd.account_id)
    state = await deps.store.get_connection(connection_id)
    if state is None:
        return refused(
            cmd,
            "connection_not_found",
            f"no connection for account {cmd.account_id!r} in space {cmd.space_id!r}",
        )
    entries = await deps.feed.read(
        connection_id, since=cmd.since, limit=cmd.limit, reached=state.feed_position
    )
    position = entries[-1].position if entries else cmd.since
    page = FeedPage(
        account_id=cmd.account_id,
        entries=tuple(entries),
        position=position,
        has_more=position < state.feed_position,
    )
    return CommandResult(
        command_id=cmd.command_id, op=cmd.op, success=True, data=msgspec.to_builtins(page)
    )
