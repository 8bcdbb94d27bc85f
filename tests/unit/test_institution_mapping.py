"""The institution mapping aggregate: seeded once, changed by command with who and why."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from events.commands import MapInstitution
from events.institutions import InstitutionMappingChanged, InstitutionMappingSeeded
from services.institutions.domain import (
    RECENT_COMMANDS_KEPT,
    InstitutionMapping,
    MappingRefusedError,
    decide_map,
    decide_seed,
    fold,
    mapping_id_for,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 4, 14, 10, 32, tzinfo=UTC)
KNOWN = frozenset({"plaid", "mx", "finicity", "belvo", "bitso", "blockchain", "manual"})


def seeded(providers: tuple[str, ...] = ("plaid", "mx", "finicity")) -> InstitutionMapping:
    events = decide_seed(
        None,
        institution_id="chase",
        name="Chase",
        region="US",
        providers=providers,
        provider_ids={"plaid": "ins_3"},
        source="seed.toml",
        known=KNOWN,
        now=NOW,
    )
    state = fold(None, events)
    assert state is not None
    return state


def map_cmd(*providers: str, command_id: str = "map-1", region: str = "US") -> MapInstitution:
    return MapInstitution(
        command_id=command_id,
        space_id="ops",
        institution_id="chase",
        region=region,
        providers=providers,
        actor="ana@ops",
        reason="plaid keeps timing out at Chase",
    )


def test_seeding_records_the_seed_files_mapping_once() -> None:
    state = seeded()

    assert (state.institution_id, state.name, state.region) == ("chase", "Chase", "US")
    assert state.providers == ("plaid", "mx", "finicity")
    assert state.provider_ids == {"plaid": "ins_3"}
    assert (state.version, state.changed_by) == (1, None)
    again = decide_seed(
        state,
        institution_id="chase",
        name="Chase",
        region="US",
        providers=("mx",),
        provider_ids={},
        source="seed.toml",
        known=KNOWN,
        now=NOW,
    )
    assert again == []


def test_a_change_records_who_why_and_both_orders() -> None:
    state = seeded()

    events = decide_map(state, map_cmd("mx", "plaid"), known=KNOWN, now=NOW, trace={"t": "1"})

    assert events == [
        InstitutionMappingChanged(
            originator_id=mapping_id_for("chase"),
            originator_version=2,
            timestamp=NOW,
            metadata={"t": "1", "command_id": "map-1"},
            command_id="map-1",
            institution_id="chase",
            region="US",
            old_providers=("plaid", "mx", "finicity"),
            new_providers=("mx", "plaid"),
            actor="ana@ops",
            reason="plaid keeps timing out at Chase",
            space_id="ops",
        )
    ]
    changed = fold(state, events)
    assert changed is not None
    assert (changed.providers, changed.version, changed.changed_by) == (
        ("mx", "plaid"),
        2,
        "ana@ops",
    )
    assert changed.name == "Chase" and changed.provider_ids == {"plaid": "ins_3"}


def test_an_institution_first_mapped_by_command_starts_from_nothing() -> None:
    events = decide_map(None, map_cmd("finicity"), known=KNOWN, now=NOW, trace={})

    assert len(events) == 1
    assert isinstance(events[0], InstitutionMappingChanged)
    assert events[0].old_providers == ()
    assert events[0].originator_version == 1
    state = fold(None, events)
    assert state is not None and state.name == "chase" and state.providers == ("finicity",)


def test_the_same_order_again_records_nothing() -> None:
    assert (
        decide_map(seeded(), map_cmd("plaid", "mx", "finicity"), known=KNOWN, now=NOW, trace={})
        == []
    )


def test_a_resent_command_is_not_applied_twice() -> None:
    state = fold(seeded(), decide_map(seeded(), map_cmd("mx"), known=KNOWN, now=NOW, trace={}))
    assert state is not None
    state = fold(
        state,
        decide_map(state, map_cmd("plaid", command_id="map-2"), known=KNOWN, now=NOW, trace={}),
    )
    assert state is not None

    # map-1 arrives again after map-2: reapplying it would undo a later decision.
    assert decide_map(state, map_cmd("mx"), known=KNOWN, now=NOW, trace={}) == []


def test_only_the_most_recent_commands_are_remembered() -> None:
    state: InstitutionMapping | None = seeded()
    for n in range(RECENT_COMMANDS_KEPT + 5):
        assert state is not None
        order = ("plaid", "mx") if n % 2 else ("mx", "plaid")
        cmd = map_cmd(*order, command_id=f"map-{n}")
        state = fold(state, decide_map(state, cmd, known=KNOWN, now=NOW, trace={}))

    assert state is not None
    assert len(state.recent_commands) == RECENT_COMMANDS_KEPT
    assert state.recent_commands[-1] == f"ops/map-{RECENT_COMMANDS_KEPT + 4}"


@pytest.mark.parametrize(
    ("providers", "code", "words"),
    [
        ((), "empty_providers", "at least one provider"),
        (("plaid", "mx", "plaid"), "duplicate_providers", "repeated: plaid"),
        (("plaid", "yodlee"), "unknown_provider", "yodlee; known: belvo, bitso"),
    ],
)
def test_a_bad_provider_list_is_refused_with_a_clear_error(
    providers: tuple[str, ...], code: str, words: str
) -> None:
    with pytest.raises(MappingRefusedError) as refused:
        decide_map(seeded(), map_cmd(*providers), known=KNOWN, now=NOW, trace={})

    assert refused.value.code == code
    assert words in str(refused.value)


def test_a_seed_with_an_unknown_provider_is_refused() -> None:
    with pytest.raises(MappingRefusedError, match="unknown provider"):
        seeded(("plaid", "yodlee"))


def test_a_mapping_cannot_move_an_institution_to_another_region() -> None:
    with pytest.raises(MappingRefusedError) as refused:
        decide_map(seeded(), map_cmd("belvo", region="MX"), known=KNOWN, now=NOW, trace={})

    assert refused.value.code == "region_mismatch"
    assert "is in region US, not MX" in str(refused.value)


def test_mapping_events_and_the_command_carry_no_secret() -> None:
    for cls in (InstitutionMappingSeeded, InstitutionMappingChanged, MapInstitution):
        fields = {f.name for f in msgspec.structs.fields(cls)}
        assert not fields & {"access_token", "secret", "password", "api_key"}


def test_the_command_decodes_from_its_wire_shape() -> None:
    wire = {
        "command_id": "map-9",
        "space_id": "ops",
        "institution_id": "banorte",
        "region": "MX",
        "providers": ["mx", "belvo"],
        "actor": "ana@ops",
        "reason": "belvo maintenance all week",
    }

    cmd = msgspec.json.decode(msgspec.json.encode(wire), type=MapInstitution)

    assert cmd.providers == ("mx", "belvo")
    assert cmd.account_id == "institution-mapping"
    with pytest.raises(msgspec.ValidationError, match="actor"):
        msgspec.json.decode(msgspec.json.encode({**wire, "actor": ""}), type=MapInstitution)


def test_the_same_command_id_from_another_space_is_another_change() -> None:
    state = fold(
        seeded(), decide_map(seeded(), map_cmd("mx", "plaid"), known=KNOWN, now=NOW, trace={})
    )
    elsewhere = msgspec.structs.replace(map_cmd("plaid", "mx"), space_id="ops-eu")

    assert decide_map(state, map_cmd("mx", "plaid"), known=KNOWN, now=NOW, trace={}) == []
    [changed] = decide_map(state, elsewhere, known=KNOWN, now=NOW, trace={})
    assert isinstance(changed, InstitutionMappingChanged) and changed.space_id == "ops-eu"


def test_a_change_recorded_before_changes_named_their_space_is_still_recognised() -> None:
    [changed] = decide_map(seeded(), map_cmd("mx", "plaid"), known=KNOWN, now=NOW, trace={})
    legacy = fold(seeded(), [msgspec.structs.replace(changed, space_id=None)])

    assert decide_map(legacy, map_cmd("mx", "plaid"), known=KNOWN, now=NOW, trace={}) == []
