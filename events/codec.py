"""Strict encoding and decoding of commands, results and events."""

from __future__ import annotations

from typing import Any

import msgspec

from events.commands import COMMAND_TYPES, Command
from events.results import CommandResult

MAX_COMMAND_BYTES = 64 * 1024
# The contract's version: 2 took the provider cursor out of `sync.transactions`.
CONTRACT_VERSION = 2

# Fields a command of an earlier contract may carry that this one dropped: read
# without them (v1 callers keep working), never refused as unknown.
_DROPPED_FIELDS: dict[str, frozenset[str]] = {
    "sync.transactions": frozenset({"cursor", "start_date", "end_date"}),
}

_encoder = msgspec.json.Encoder()
_command_decoders = {op: msgspec.json.Decoder(cls) for op, cls in COMMAND_TYPES.items()}
_result_decoder = msgspec.json.Decoder(CommandResult)


class CommandDecodeError(ValueError):
    """A command that cannot be accepted; `code` is stable, `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode_command(op: str, payload: bytes) -> Command:
    """Decode a command for `op`, refusing unknown ops, fields, types and sizes."""
    decoder = _command_decoders.get(op)
    if decoder is None:
        known = ", ".join(sorted(COMMAND_TYPES))
        raise CommandDecodeError("unknown_operation", f"unknown operation {op!r}; known: {known}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandDecodeError(
            "payload_too_large",
            f"command is {len(payload)} bytes; the limit is {MAX_COMMAND_BYTES}",
        )
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        upcast = _without_dropped_fields(op, payload)
        if upcast is None:
            raise CommandDecodeError("invalid_command", str(exc)) from None
        try:
            return decoder.decode(upcast)
        except msgspec.ValidationError as again:
            raise CommandDecodeError("invalid_command", str(again)) from None
    except msgspec.DecodeError as exc:
        raise CommandDecodeError("malformed_json", str(exc)) from None


def _without_dropped_fields(op: str, payload: bytes) -> bytes | None:
    """An earlier contract's command in the current shape, or None if it is not one.

    Only the slow path: a current command decodes strictly on the first try.
    """
    dropped = _DROPPED_FIELDS.get(op)
    if dropped is None:
        return None
    try:
        fields = msgspec.json.decode(payload, type=dict[str, Any])
    except msgspec.DecodeError:
        return None
    if dropped.isdisjoint(fields):
        return None
    return _encoder.encode({k: v for k, v in fields.items() if k not in dropped})


def decode_result(payload: bytes) -> CommandResult:
    return _result_decoder.decode(payload)
