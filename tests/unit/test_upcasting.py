"""Stored events of an older shape are upcast to the current one when read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest
from eventsourcing.cryptography import AESCipher

from events.connection import ConnectionAttempted, SyncCompleted
from events.upcasting import current_json, mark_version, topic_name
from infra.eventlog.reader import decode_stored, plaintext
from infra.eventstore import store_mapper

pytestmark = pytest.mark.unit

ATTEMPTED = topic_name(ConnectionAttempted)
NOW = datetime(2026, 11, 23, 10, 32, tzinfo=UTC)


def attempted(**fields: object) -> ConnectionAttempted:
    return ConnectionAttempted(
        originator_id=uuid.uuid4(),
        originator_version=3,
        timestamp=NOW,
        command_id="c1",
        op="sync.transactions",
        provider="plaid",
        region="US",
        attempt=1,
        failover=False,
        outcome="timeout",
        response_time_ms=2000.0,
        **fields,  # type: ignore[arg-type]
    )


def v1_json(event: ConnectionAttempted) -> bytes:
    """The shape ConnectionAttempted had before version 2: `latency_ms`, no `error_type`."""
    state = msgspec.to_builtins(event)
    state["latency_ms"] = state.pop("response_time_ms")
    del state["error_type"]
    return msgspec.json.encode(state)


def test_a_current_event_reads_back_unchanged_through_its_version_marker() -> None:
    event = attempted(error_type="network", error_code="TIMEOUT")
    stored = mark_version(ATTEMPTED, msgspec.json.encode(event))
    assert stored.endswith(b',"_v":2}')
    assert current_json(ATTEMPTED, stored) == msgspec.json.encode(event)


def test_a_version_1_event_is_upcast_renaming_latency_and_classifying_its_error() -> None:
    event = attempted()
    upcast = msgspec.json.decode(current_json(ATTEMPTED, v1_json(event)), type=ConnectionAttempted)
    assert upcast.response_time_ms == 2000.0
    assert upcast.error_type == "network"  # a timeout counted as a network error in v1
    assert msgspec.structs.replace(upcast, error_type=None) == event


def test_a_version_1_event_does_not_decode_strictly_without_its_upcaster() -> None:
    with pytest.raises(msgspec.ValidationError, match="latency_ms"):
        msgspec.json.decode(v1_json(attempted()), type=ConnectionAttempted)


def test_an_unmarked_event_already_in_the_current_shape_is_left_as_it_is() -> None:
    event = attempted(error_type="provider_down")
    assert msgspec.json.decode(
        current_json(ATTEMPTED, msgspec.json.encode(event)), type=ConnectionAttempted
    ) == (event)


def test_a_version_newer_than_this_code_is_refused_clearly() -> None:
    stored = msgspec.json.encode(attempted())[:-1] + b',"_v":7}'
    with pytest.raises(ValueError, match="stored version 7"):
        current_json(ATTEMPTED, stored)


def test_unversioned_event_types_are_stored_and_read_without_a_marker() -> None:
    topic = topic_name(SyncCompleted)
    assert mark_version(topic, b'{"a":1}') == b'{"a":1}'
    assert current_json(topic, b'{"a":1}') == b'{"a":1}'


def test_decode_stored_decrypts_and_upcasts_an_old_event_as_the_store_reads_it() -> None:
    mapper = store_mapper(AESCipher.create_key(32))
    assert mapper.cipher is not None
    event = attempted()
    stored = mapper.cipher.encrypt(v1_json(event))
    decoded = decode_stored(mapper, ATTEMPTED, stored)
    assert isinstance(decoded, ConnectionAttempted)
    assert decoded.response_time_ms == 2000.0 and decoded.error_type == "network"
    assert mapper.to_domain_event(mapper.to_stored_event(decoded)) == decoded


def test_the_reader_decrypts_what_the_library_encrypts_and_refuses_a_damaged_state() -> None:
    mapper = store_mapper(AESCipher.create_key(32))
    assert mapper.cipher is not None
    stored = mapper.cipher.encrypt(b'{"a":1}')
    assert plaintext(mapper, stored) == mapper.cipher.decrypt(stored) == b'{"a":1}'
    damaged = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(ValueError, match="Invalid cipher tag"):
        plaintext(mapper, damaged)
