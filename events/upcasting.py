"""Event versioning: stored events of an older shape are upcast to the current one when read.

An event type whose shape changed gets a list of upcasters, one per step:
`UPCASTERS[topic][0]` turns version 1 into version 2, `[1]` version 2 into 3,
and so on; its current version is one more than the number of steps.

The version marker is a `"_v"` key that the store's mapper appends to the
stored JSON of events whose type has upcasters (`mark_version`). Events
stored before a type was versioned carry no marker and read as version 1, so
a type's first upcaster must accept both the old shape and the current shape
written before markers existed (it only renames or fills what is missing).

Reading costs nothing extra for the current shape: the marker is always the
last key, so it is recognised and cut off by a byte comparison, and the
strict msgspec decode runs on the rest. Only an older event takes the slow
path (decoded to a dict, upcast step by step, re-encoded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from events.connection import ConnectionAttempted

VERSION_KEY = "_v"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def topic_name(cls: type) -> str:
    """The stored topic of an event class (what eventsourcing's `get_topic` writes)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _connection_attempted_v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    """v1 called the call's duration `latency_ms` and had no `error_type`.

    v1 predates the error taxonomy: a timeout counted as a network error, any
    other failure as unknown — what the breaker still assumes when it is absent.
    """
    if "latency_ms" in state:
        state["response_time_ms"] = state.pop("latency_ms")
    if state.get("error_type") is None and state.get("outcome") in ("failure", "timeout"):
        state["error_type"] = "network" if state["outcome"] == "timeout" else "unknown"
    return state


UPCASTERS: dict[str, tuple[Upcaster, ...]] = {
    topic_name(ConnectionAttempted): (_connection_attempted_v1_to_v2,),
}


_SUFFIXES = {
    topic: f',"{VERSION_KEY}":{len(steps) + 1}}}'.encode() for topic, steps in UPCASTERS.items()
}


def mark_version(topic: str, encoded: bytes) -> bytes:
    """The JSON to store for an event of `topic`: marked with its version when it has one."""
    suffix = _SUFFIXES.get(topic)
    if suffix is None:
        return encoded
    if encoded == b"{}":
        return suffix.replace(b",", b"{", 1)
    return encoded[:-1] + suffix


def current_json(topic: str, stored: bytes) -> bytes:
    """The stored JSON of an event in its current shape, without the version marker."""
    suffix = _SUFFIXES.get(topic)
    if suffix is None:
        return stored
    if stored.endswith(suffix):
        return stored[: -len(suffix)] + b"}"
    state = msgspec.json.decode(stored, type=dict[str, Any])
    version = state.pop(VERSION_KEY, 1)
    steps = UPCASTERS[topic]
    if not isinstance(version, int) or not 1 <= version <= len(steps) + 1:
        raise ValueError(f"{topic}: stored version {version!r} is not one this code knows")
    for step in steps[version - 1 :]:
        state = step(state)
    return msgspec.json.encode(state)
