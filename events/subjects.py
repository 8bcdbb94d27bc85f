"""NATS subjects and stream names: the addresses of the contract."""

from __future__ import annotations

from urllib.parse import quote

COMMAND_PREFIX = "syncyard.cmd"
RPC_PREFIX = "syncyard.rpc"
EVENT_PREFIX = "syncyard.evt"
DLQ_PREFIX = "syncyard.dlq"
RESULT_PREFIX = "syncyard.result"
# Per-space copies of results: a tenant's login may be allowed its spaces' alone.
SPACE_PREFIX = "syncyard.space"

COMMAND_STREAM = "SYNCYARD_CMD"
EVENT_STREAM = "SYNCYARD_EVT"
DLQ_STREAM = "SYNCYARD_DLQ"

# Headers (besides Nats-Msg-Id) that syncyard reads or writes.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_COMMAND_ID = "Syncyard-Command-Id"
HEADER_SPACE_ID = "Syncyard-Space-Id"
HEADER_NOTIFICATION_ID = "Syncyard-Notification-Id"


def command_msg_id(space_id: str, command_id: str) -> str:
    """The `Nats-Msg-Id` a command is sent with: its command id, scoped by its space.

    JetStream drops a repeated message id across the whole stream, and command
    ids are unique only within a space: unscoped, one tenant's `sync-1` would
    make JetStream drop another's. The space is percent-encoded (RFC 3986,
    unreserved characters kept: `demo/sync-1` for space `demo`), so the id is
    header-safe and, a command id holding no "/", splits back at its last "/".
    """
    return f"{space_header(space_id)}/{command_id}"


def space_header(space_id: str) -> str:
    """A space id as headers carry it (`Syncyard-Space-Id`, and in `command_msg_id`).

    Percent-encoded: a space id may hold any character, a header value may not.
    """
    return quote(space_id, safe="")


def space_token(space_id: str) -> str:
    """A space id as one subject token: percent-encoded, "." included.

    A subject splits at ".", and "*" and ">" are wildcards: encoded, every
    space is exactly one token, so a permission can name it, and two spaces
    never share one.
    """
    return quote(space_id, safe="").replace(".", "%2E")


def space_result_subject(space_id: str, op: str) -> str:
    """`syncyard.space.<space>.result.<op>`: the result's copy for its space's readers.

    Outside `syncyard.result.>`, so a reader of every result does not get it twice.
    """
    return f"{SPACE_PREFIX}.{space_token(space_id)}.result.{op}"


def command_subject(op: str) -> str:
    return f"{COMMAND_PREFIX}.{op}"


def rpc_subject(op: str) -> str:
    return f"{RPC_PREFIX}.{op}"


def result_subject(op: str) -> str:
    return f"{RESULT_PREFIX}.{op}"


def dlq_subject(op: str) -> str:
    return f"{DLQ_PREFIX}.{op}"


def event_subject(aggregate: str, event_name: str) -> str:
    return f"{EVENT_PREFIX}.{aggregate}.{event_name}"


def op_from_subject(subject: str, prefix: str) -> str:
    """`syncyard.cmd.sync.transactions` → `sync.transactions`."""
    return subject[len(prefix) + 1 :] if subject.startswith(prefix + ".") else ""
