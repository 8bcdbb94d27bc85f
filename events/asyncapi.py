"""The AsyncAPI 3.0 description of syncyard's NATS interface, generated from the contract.

Channels and messages come from the same registries and structs as the JSON
Schemas (`schema.py`): one channel per command op on `syncyard.cmd.<op>` and
on its space's `syncyard.space.<space>.cmd.<op>` (JetStream), and on
`syncyard.rpc.<op>` (request/reply), its result on `syncyard.result.<op>` and
its space's, its dead letters on `syncyard.dlq.<op>`, and one per
published event on `syncyard.evt.<aggregate>.<Event>`. Operations are
syncyard's own: it receives the commands and sends everything else. A new
command or event appears here by being registered, and a change to any of
them shows in the snapshot test (`tests/unit/test_asyncapi.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from events.base import DomainEvent
from events.breaker import BREAKER_EVENT_TYPES
from events.commands import COMMAND_TYPES, FLEET_OPS
from events.connection import CONNECTION_EVENT_TYPES
from events.deadletter import DeadLetter
from events.institutions import INSTITUTION_EVENT_TYPES
from events.results import CommandResult
from events.saga import SAGA_EVENT_TYPES
from events.schema import CONTRACT_VERSION, contract_types
from events.subjects import (
    COMMAND_STREAM,
    DLQ_STREAM,
    EVENT_STREAM,
    HEADER_COMMAND_ID,
    HEADER_MSG_ID,
    HEADER_NOTIFICATION_ID,
    HEADER_SPACE_ID,
    SPACE_PREFIX,
    command_subject,
    dlq_subject,
    event_subject,
    result_subject,
    rpc_subject,
)

ASYNCAPI_VERSION = "3.0.0"
PUBLISHED_EVENT_TYPES: tuple[type[DomainEvent], ...] = (
    *CONNECTION_EVENT_TYPES,
    *BREAKER_EVENT_TYPES,
    *INSTITUTION_EVENT_TYPES,
    *SAGA_EVENT_TYPES,
)

Document = dict[str, Any]

_TRACEPARENT = "traceparent"  # W3C trace context, read and written by OpenTelemetry
_COMMAND_HEADERS: Document = {
    "type": "object",
    "properties": {
        HEADER_MSG_ID: {
            "type": "string",
            "description": f"On `{command_subject('<op>')}` and "
            f"`{SPACE_PREFIX}.<space>.cmd.<op>`: `<space_id>/<command_id>`, "
            "the space id percent-encoded (RFC 3986: all but unreserved characters), e.g. "
            "`demo/sync-1`. The command queue keeps no duplicate window (no sender "
            "can make JetStream drop another space's command by sending its id "
            "first): a command sent twice reaches syncyard, which recognises it by "
            "its space and command id, applies it once and answers it again with "
            "`duplicate: true`. The same command id in another space is another "
            "command. A bare command id, as senders used to send, is still accepted.",
        },
        _TRACEPARENT: {
            "type": "string",
            "description": "The caller's trace: syncyard's spans and the events the command "
            "causes carry it on",
        },
    },
}
_RESULT_HEADERS: Document = {
    "type": "object",
    "properties": {
        HEADER_COMMAND_ID: {
            "type": "string",
            "description": f"On `{result_subject('<op>')}`: the id of the command answered "
            "(an RPC reply carries no headers)",
        },
        HEADER_SPACE_ID: {
            "type": "string",
            "description": f"On `{result_subject('<op>')}`: the space of the command answered, "
            "percent-encoded as in the command's message id: command ids are unique per "
            "space only, so match a result by both",
        },
    },
}
_EVENT_HEADERS: Document = {
    "type": "object",
    "required": [HEADER_MSG_ID, HEADER_NOTIFICATION_ID],
    "properties": {
        HEADER_MSG_ID: {
            "type": "string",
            "description": "Unique per event: JetStream drops the repeats of a relay restart. "
            "An HMAC of the notification id under a key only syncyard holds, so nobody can "
            "publish first with it; not a position: identify an event by "
            f"`{HEADER_NOTIFICATION_ID}`",
        },
        HEADER_NOTIFICATION_ID: {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "The event's position in the event store's notification log",
        },
        _TRACEPARENT: {
            "type": "string",
            "description": "The trace of the command that caused the event, when it had one",
        },
    },
}


_SPACE_PARAMETER: Document = {
    "description": "The command's space id, percent-encoded into one subject "
    "token (`.` too: space `acme.eu` is `acme%2Eeu`)"
}


def aggregate_of(event_type: type) -> str:
    """The `<aggregate>` of an event's subject: its module's name, as the relay publishes it."""
    return event_type.__module__.rsplit(".", 1)[-1]


def _summary(cls: type) -> str | None:
    # Only the class's own docstring: an undocumented event would otherwise show its base's.
    doc = cls.__dict__.get("__doc__")
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ") if doc else None


def _ref(*path: str) -> Document:
    return {"$ref": "#/" + "/".join(path)}


class _Builder:
    def __init__(self) -> None:
        self.channels: Document = {}
        self.operations: Document = {}

    def channel(self, channel_id: str, address: str | None, message: str, **text: str) -> None:
        self.channels[channel_id] = {
            "address": address,
            **text,
            "messages": {message: _ref("components", "messages", message)},
        }

    def operation(
        self, action: str, channel_id: str, message: str, reply: tuple[str, str] | None = None
    ) -> None:
        operation: Document = {
            "action": action,
            "channel": _ref("channels", channel_id),
            "messages": [_ref("channels", channel_id, "messages", message)],
        }
        if reply is not None:
            reply_channel, reply_message = reply
            operation["reply"] = {
                "channel": _ref("channels", reply_channel),
                "messages": [_ref("channels", reply_channel, "messages", reply_message)],
            }
        self.operations[f"{action}.{channel_id}"] = operation


def _headers(cls: type) -> Document | None:
    if cls in PUBLISHED_EVENT_TYPES:
        return _EVENT_HEADERS
    if cls in COMMAND_TYPES.values():
        return _COMMAND_HEADERS
    return _RESULT_HEADERS if cls is CommandResult else None


def _messages(types: dict[str, type[Any]], refs: Sequence[Document]) -> Document:
    messages: Document = {}
    for (name, cls), payload in zip(types.items(), refs, strict=True):
        message: Document = {"name": cls.__name__, "contentType": "application/json"}
        summary = _summary(cls)
        if summary:
            message["summary"] = summary
        headers = _headers(cls)
        if headers is not None:
            message["headers"] = headers
        message["payload"] = payload
        messages[name] = message
    return messages


def asyncapi_document() -> Document:
    """The whole document, as plain JSON data."""
    types = contract_types()
    message_of = {cls: name for name, cls in types.items()}
    refs, schemas = msgspec.json.schema_components(
        types.values(), ref_template="#/components/schemas/{name}"
    )
    result, dead_letter = message_of[CommandResult], message_of[DeadLetter]
    doc = _Builder()
    for op, command in COMMAND_TYPES.items():
        message = message_of[command]
        queued, rpc, reply = command_subject(op), rpc_subject(op), f"rpc-reply.{op}"
        doc.channel(
            queued,
            queued,
            message,
            title=f"{op} (queued)",
            description=f"JetStream stream `{COMMAND_STREAM}`, a work queue: each command is "
            f"taken by one worker, and answered on `{result_subject(op)}`.",
        )
        doc.operation("receive", queued, message)
        per_space = f"space-command.{op}"
        doc.channel(
            per_space,
            f"{SPACE_PREFIX}.{{space}}.cmd.{op}",
            message,
            title=f"{op} (queued, on its space's subject)",
            description=(
                f"Not run when sent here (`fleet_op`): `{op}` acts for every space, so it "
                f"is sent on `{queued}` alone, and no tenant's login may publish here."
                if op in FLEET_OPS
                else f"The same queue as `{queued}`, on the subject of the command's "
                "space: a tenant's login may publish its spaces' alone. A command whose "
                "`space_id` is not the subject's space is not run: it is dead-lettered "
                "(`space_mismatch`) and refused on the space's results subject."
            ),
        )
        doc.channels[per_space]["parameters"] = {"space": _SPACE_PARAMETER}
        doc.operation("receive", per_space, message)
        doc.channel(
            rpc,
            rpc,
            message,
            title=f"{op} (request/reply)",
            description="Core NATS request/reply: the result is the reply.",
        )
        doc.channel(
            reply,
            None,
            result,
            title=f"{op} reply",
            description="The requester's reply inbox: the request's reply subject.",
        )
        doc.operation("receive", rpc, message, reply=(reply, result))
    for op in COMMAND_TYPES:
        doc.channel(
            result_subject(op),
            result_subject(op),
            result,
            title=f"{op} results",
            description=f"Core NATS, not stored: one result per queued command (a deferred "
            f"command gets a second, final one); `{HEADER_COMMAND_ID}` names the command.",
        )
        doc.operation("send", result_subject(op), result)
        per_space = f"space-result.{op}"
        doc.channel(
            per_space,
            f"{SPACE_PREFIX}.{{space}}.result.{op}",
            result,
            title=f"{op} results, per space",
            description=f"Each result of `{result_subject(op)}` again, on its space's own "
            "subject, so a tenant's login may be allowed its spaces' alone.",
        )
        doc.channels[per_space]["parameters"] = {"space": _SPACE_PARAMETER}
        doc.operation("send", per_space, result)
    for op in COMMAND_TYPES:
        doc.channel(
            dlq_subject(op),
            dlq_subject(op),
            dead_letter,
            title=f"{op} dead letters",
            description=f"JetStream stream `{DLQ_STREAM}`: commands refused or given up on, "
            "with the reason, kept for a person to look at. A command for an op syncyard "
            "does not know is dead-lettered on the dead-letter subject of that op.",
        )
        doc.operation("send", dlq_subject(op), dead_letter)
    for event in PUBLISHED_EVENT_TYPES:
        subject = event_subject(aggregate_of(event), event.__name__)
        doc.channel(
            subject,
            subject,
            message_of[event],
            title=f"{aggregate_of(event)} {event.__name__}",
            description=f"JetStream stream `{EVENT_STREAM}`: every stored event of this type, "
            f"published by the relay; a repeat after a relay restart is dropped by "
            f"`{HEADER_MSG_ID}`.",
        )
        doc.operation("send", subject, message_of[event])
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "syncyard",
            "version": CONTRACT_VERSION,
            "description": "Commands in, results, events and dead letters out, over NATS "
            "JetStream. Payloads are JSON; commands refuse unknown fields.",
        },
        "defaultContentType": "application/json",
        "channels": doc.channels,
        "operations": doc.operations,
        "components": {"schemas": schemas, "messages": _messages(types, refs)},
    }


def write_asyncapi(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = msgspec.json.encode(asyncapi_document())
    path.write_bytes(msgspec.json.format(encoded, indent=2) + b"\n")
    return path
