"""The AsyncAPI document of the NATS interface matches the reviewed snapshot, and says
where each command, result, dead letter and published event goes.

After an intended change: `SYNCYARD_UPDATE_CONTRACT=1 make test-unit`, and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.asyncapi import PUBLISHED_EVENT_TYPES, asyncapi_document, write_asyncapi
from events.commands import COMMAND_TYPES
from events.credentials import PRIVATE_EVENT_TYPES
from events.schema import contract_types
from events.subjects import command_subject, dlq_subject, result_subject, rpc_subject
from infra.eventlog.relay import subject_for
from services.ports import topic_of

pytestmark = pytest.mark.unit
SNAPSHOT = Path(__file__).parent / "contract" / "asyncapi.json"


def plain(document: dict[str, Any]) -> Any:
    return msgspec.json.decode(msgspec.json.encode(document))


def channel_messages(document: dict[str, Any], address: str) -> list[str]:
    """The payload schema names of the messages on the channel at `address`."""
    (channel,) = [c for c in document["channels"].values() if c["address"] == address]
    names = []
    for ref in channel["messages"].values():
        message = document["components"]["messages"][ref["$ref"].rsplit("/", 1)[-1]]
        names.append(message["payload"]["$ref"].rsplit("/", 1)[-1])
    return names


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_the_asyncapi_document_matches_its_snapshot() -> None:
    if os.environ.get("SYNCYARD_UPDATE_CONTRACT"):
        write_asyncapi(SNAPSHOT)
    assert msgspec.json.decode(SNAPSHOT.read_bytes()) == plain(asyncapi_document())


def test_every_command_op_is_received_queued_and_by_rpc_and_answered_and_dead_lettered() -> None:
    document = asyncapi_document()
    for op, command in COMMAND_TYPES.items():
        assert channel_messages(document, command_subject(op)) == [command.__name__]
        on_its_space = f"syncyard.space.{{space}}.cmd.{op}"
        assert channel_messages(document, on_its_space) == [command.__name__]
        assert f"receive.space-command.{op}" in document["operations"]
        assert channel_messages(document, rpc_subject(op)) == [command.__name__]
        assert channel_messages(document, result_subject(op)) == ["CommandResult"]
        assert channel_messages(document, dlq_subject(op)) == ["DeadLetter"]
        rpc = document["operations"][f"receive.{rpc_subject(op)}"]
        reply = rpc["reply"]["channel"]["$ref"].rsplit("/", 1)[-1]
        assert document["channels"][reply]["address"] is None  # the requester's inbox


def test_each_published_event_has_the_channel_the_relay_publishes_it_on() -> None:
    document = asyncapi_document()
    for event in PUBLISHED_EVENT_TYPES:
        assert channel_messages(document, subject_for(topic_of(event))) == [event.__name__]
    event_channels = [c for c in document["channels"] if c.startswith("syncyard.evt.")]
    assert len(event_channels) == len(PUBLISHED_EVENT_TYPES)


def test_only_the_contract_s_events_are_described_and_no_private_one() -> None:
    document = asyncapi_document()
    published = {name for name in document["components"]["messages"] if name.startswith("event.")}
    assert published == {name for name in contract_types() if name.startswith("event.")}
    for event in PRIVATE_EVENT_TYPES:
        assert event.__name__ not in document["components"]["schemas"]


def test_every_reference_resolves_and_operations_name_only_their_channel_s_messages() -> None:
    document = plain(asyncapi_document())
    for ref in set(refs(document)):
        node = document
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, ref
            node = node[part]
    for operation_id, operation in document["operations"].items():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel}/messages/"), operation_id
