"""NATS subjects and stream names: the addresses of the contract."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote, unquote

COMMAND_PREFIX = "syncyard.cmd"
RPC_PREFIX = "syncyard.rpc"
EVENT_PREFIX = "syncyard.evt"
DLQ_PREFIX = "syncyard.dlq"
RESULT_PREFIX = "syncyard.result"
# Per-space subjects: a tenant's login may be allowed its spaces' alone, to send
# commands (`syncyard.space.<space>.cmd.<op>`) and to read results.
SPACE_PREFIX = "syncyard.space"
# Every space's commands: what the command stream takes beside `syncyard.cmd.>`.
SPACE_COMMANDS = f"{SPACE_PREFIX}.*.cmd.>"

COMMAND_STREAM = "SYNCYARD_CMD"
# Empty, and never published on: the command stream sources it only so that
# nats-server (2.14 and later) lets that stream keep no duplicate window at all
# (infra/streams.py).
COMMAND_NO_DEDUPE_STREAM = "SYNCYARD_CMD_NO_DEDUPE"
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


def command_key(space_id: str | None, command_id: str) -> str:
    """A command as an aggregate remembers it, to recognise it when it is sent again:
    `command_msg_id`, or its bare id in events recorded before they named its space."""
    return command_id if space_id is None else command_msg_id(space_id, command_id)


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


def space_command_subject(space_id: str, op: str) -> str:
    """`syncyard.space.<space>.cmd.<op>`: a command sent on its space's own subject.

    A permission can name the space here (`space_token`), unlike on
    `syncyard.cmd.<op>`, so a tenant's login may be held to its spaces'
    commands; the worker refuses one whose payload names another space.
    """
    return f"{SPACE_PREFIX}.{space_token(space_id)}.cmd.{op}"


class CommandAddress(NamedTuple):
    """What a command's subject says: its op, and whether and which space it names."""

    op: str
    # Sent on `syncyard.space.<space>.cmd.<op>`: the command must be for that space.
    space_scoped: bool
    # The space the subject names; None on `syncyard.cmd.<op>`, and when the token is
    # not how `space_token` writes any space (then no space's subject is trusted).
    space_id: str | None


def command_address(subject: str) -> CommandAddress:
    """`syncyard.cmd.<op>` or `syncyard.space.<space>.cmd.<op>`, read back."""
    if subject.startswith(f"{COMMAND_PREFIX}."):
        return CommandAddress(op_from_subject(subject, COMMAND_PREFIX), False, None)
    token, _, rest = op_from_subject(subject, SPACE_PREFIX).partition(".")
    op = op_from_subject(rest, "cmd")
    try:
        space_id: str | None = unquote(token, errors="strict")
    except UnicodeDecodeError:
        space_id = None
    if not (op and space_id and space_token(space_id) == token):
        # Not a space's command subject, or another spelling of a space's token:
        # permissions name a space by `space_token` alone.
        space_id = None
    return CommandAddress(op, True, space_id)


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
