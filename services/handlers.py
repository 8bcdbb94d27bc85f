"""One handler per command op, registered in one explicit table.

Each handler turns a decoded command into a `CommandResult`, recording what
happened through the event store before it answers. The saga commands have
their table in `sagas/commands.py`; `infra/bootstrap.py` joins the two (sagas
build on services, so services never import them).
"""

from __future__ import annotations

from collections.abc import Mapping

from events.commands import (
    Command,
    CreateLink,
    ForceBreaker,
    GetAccounts,
    MapInstitution,
    ReadFeed,
    RegisterConnection,
    ReleaseBreaker,
    SyncTransactions,
)
from services.control_breaker import force_breaker, release_breaker
from services.create_link import create_link
from services.dependencies import Dependencies, Handler
from services.institutions.handlers import map_institution
from services.read_feed import read_feed
from services.register_connection import register_connection
from services.sync_connection import sync_connection

__all__ = ["HANDLERS", "Dependencies"]


HANDLERS: Mapping[type[Command], Handler] = {
    RegisterConnection: register_connection,
    SyncTransactions: sync_connection,
    ReadFeed: read_feed,
    GetAccounts: sync_connection,
    CreateLink: create_link,
    MapInstitution: map_institution,
    ForceBreaker: force_breaker,
    ReleaseBreaker: release_breaker,
}
