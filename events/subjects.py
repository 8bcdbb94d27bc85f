"""NATS subjects and stream names: the addresses of the contract."""

from __future__ import annotations

COMMAND_PREFIX = "syncyard.cmd"
RPC_PREFIX = "syncyard.rpc"
EVENT_PREFIX = "syncyard.evt"
DLQ_PREFIX = "syncyard.dlq"
RESULT_PREFIX = "syncyard.result"

COMMAND_STREAM = "SYNCYARD_CMD"
EVENT_STREAM = "SYNCYARD_EVT"
DLQ_STREAM = "SYNCYARD_DLQ"

# Headers (besides Nats-Msg-Id) that syncyard reads or writes.
HEADER_MSG_ID = "Nats-Msg-Id"
HEADER_COMMAND_ID = "Syncyard-Command-Id"
HEADER_NOTIFICATION_ID = "Syncyard-Notification-Id"


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
