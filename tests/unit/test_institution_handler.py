"""`institution.map`: recorded with who and why, refused when invalid, safe to resend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from events.commands import COMMAND_TYPES, MapInstitution
from events.institutions import InstitutionMappingChanged
from infra.config import DEFAULT_HIERARCHY
from services.institutions.domain import decide_map, mapping_id_for
from services.institutions.handlers import Institutions, map_institution
from services.institutions.seed import SeedInstitution, open_directory
from services.providers.registry import ADAPTER_FACTORIES
from tests.unit.fake_institution_store import InMemoryInstitutionStore

pytestmark = pytest.mark.unit

NOW = datetime(2025, 4, 14, 10, 32, tzinfo=UTC)
KNOWN = frozenset(ADAPTER_FACTORIES)


@dataclass
class Deps:
    """What services.handlers.Dependencies offers this handler, and no more."""

    institutions: Institutions | None
    now: Callable[[], datetime] = field(default=lambda: NOW)


async def deps_with(store: InMemoryInstitutionStore) -> Deps:
    directory = await open_directory(
        store,
        hierarchy=DEFAULT_HIERARCHY,
        known=KNOWN,
        now=lambda: NOW,
        seed=[SeedInstitution(id="chase", name="Chase", region="US")],
    )
    return Deps(Institutions(store=store, directory=directory, known_providers=KNOWN))


def cmd(*providers: str, command_id: str = "map-1", institution: str = "chase") -> MapInstitution:
    return MapInstitution(
        command_id=command_id,
        space_id="ops",
        institution_id=institution,
        region="US",
        providers=providers,
        actor="ana@ops",
        reason="plaid outage at Chase",
    )


def test_the_command_is_in_the_contracts_command_table() -> None:
    assert COMMAND_TYPES["institution.map"] is MapInstitution


async def test_a_change_is_recorded_and_the_directory_follows_at_once() -> None:
    store = InMemoryInstitutionStore()
    deps = await deps_with(store)

    result = await map_institution(deps, cmd("mx", "finicity"), {"traceparent": "00-ab"})

    assert result.success and not result.duplicate
    assert result.data == {
        "institution_id": "chase",
        "region": "US",
        "providers": ["mx", "finicity"],
        "version": 2,
        "changed": True,
    }
    assert deps.institutions is not None
    assert deps.institutions.directory.providers_for("chase", "US") == ("mx", "finicity")
    recorded = store.streams[mapping_id_for("chase")][-1]
    assert isinstance(recorded, InstitutionMappingChanged)
    assert (recorded.actor, recorded.reason) == ("ana@ops", "plaid outage at Chase")
    assert recorded.metadata == {"traceparent": "00-ab", "command_id": "map-1"}


async def test_a_resent_command_answers_as_a_duplicate_and_records_nothing() -> None:
    store = InMemoryInstitutionStore()
    deps = await deps_with(store)
    await map_institution(deps, cmd("mx"), {})
    appends = store.appends

    again = await map_institution(deps, cmd("mx"), {})

    assert again.success and again.duplicate
    assert store.appends == appends


async def test_an_invalid_mapping_is_refused_as_validation_and_records_nothing() -> None:
    store = InMemoryInstitutionStore()
    deps = await deps_with(store)
    appends = store.appends

    result = await map_institution(deps, cmd("plaid", "yodlee"), {})

    assert not result.success and result.error is not None
    assert (result.error.code, result.error.type, result.error.retryable) == (
        "unknown_provider",
        "validation",
        False,
    )
    assert "yodlee" in result.error.message
    assert store.appends == appends


async def test_a_race_lost_to_another_replica_is_decided_again_on_its_result() -> None:
    store = InMemoryInstitutionStore()
    deps = await deps_with(store)
    seeded = (await store.load(mapping_id_for("chase")))[0]
    assert deps.institutions is not None
    state = deps.institutions.directory.get("chase")
    theirs = cmd("finicity", command_id="their-map")
    store.ahead_of_next_append = decide_map(state, theirs, known=KNOWN, now=NOW, trace={})

    result = await map_institution(deps, cmd("mx"), {})

    assert result.success and result.data is not None and result.data["version"] == 3
    changes = store.streams[mapping_id_for("chase")][1:]
    assert [c.new_providers for c in changes if isinstance(c, InstitutionMappingChanged)] == [
        ("finicity",),
        ("mx",),
    ]
    assert seeded.originator_version == 1


async def test_without_a_mapping_configured_the_command_says_so() -> None:
    result = await map_institution(Deps(None), cmd("mx"), {})

    assert not result.success and result.error is not None
    assert result.error.code == "not_configured"
