"""JSON Schema export of the public contract (commands, results, published events)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from events.breaker import BREAKER_EVENT_TYPES
from events.commands import COMMAND_TYPES
from events.connection import CONNECTION_EVENT_TYPES
from events.deadletter import DeadLetter
from events.institutions import INSTITUTION_EVENT_TYPES
from events.results import CommandResult
from events.saga import SAGA_EVENT_TYPES

CONTRACT_VERSION = "1"


def contract_types() -> dict[str, type[Any]]:
    """Every type a client of syncyard sees, by the name its schema file gets."""
    types: dict[str, type[Any]] = {f"command.{op}": cls for op, cls in COMMAND_TYPES.items()}
    types["result"] = CommandResult
    types["dead_letter"] = DeadLetter
    types.update({f"event.connection.{cls.__name__}": cls for cls in CONNECTION_EVENT_TYPES})
    types.update({f"event.breaker.{cls.__name__}": cls for cls in BREAKER_EVENT_TYPES})
    types.update({f"event.institutions.{cls.__name__}": cls for cls in INSTITUTION_EVENT_TYPES})
    types.update({f"event.saga.{cls.__name__}": cls for cls in SAGA_EVENT_TYPES})
    return types


def contract_schemas() -> dict[str, dict[str, Any]]:
    return {name: msgspec.json.schema(cls) for name, cls in contract_types().items()}


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in contract_schemas().items():
        versioned = {"$comment": f"syncyard contract v{CONTRACT_VERSION}", **schema}
        path = out_dir / f"{name}.schema.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(versioned), indent=2) + b"\n")
        written.append(path)
    return written
