"""The contract's JSON Schemas match the reviewed snapshot: changes are deliberate.

After an intended change: `SYNCYARD_UPDATE_CONTRACT=1 make test-unit`, and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from events.schema import contract_schemas, write_schemas

pytestmark = pytest.mark.unit
SNAPSHOT = Path(__file__).parent / "contract"


def test_every_contract_schema_matches_its_snapshot() -> None:
    if os.environ.get("SYNCYARD_UPDATE_CONTRACT"):
        write_schemas(SNAPSHOT)
    schemas = contract_schemas()
    stored = {p.name.removesuffix(".schema.json") for p in SNAPSHOT.glob("*.schema.json")}
    assert stored == set(schemas), "a contract type was added or removed"
    for name, schema in schemas.items():
        snapshot = msgspec.json.decode((SNAPSHOT / f"{name}.schema.json").read_bytes())
        snapshot.pop("$comment", None)
        assert snapshot == msgspec.json.decode(msgspec.json.encode(schema)), name


def test_no_published_event_schema_has_an_access_token_field() -> None:
    for name, schema in contract_schemas().items():
        if name.startswith("event."):
            assert "access_token" not in msgspec.json.encode(schema).decode(), name
