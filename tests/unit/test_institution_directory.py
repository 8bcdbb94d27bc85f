"""The institution directory: mapped order first, the region's order for the rest;
built from the seed file once, from the recorded events after."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from events.breaker import BreakerHalfOpened
from events.commands import MapInstitution
from infra.config import DEFAULT_HIERARCHY
from sandbox import belvo_api_data, finicity_api_data
from sandbox.institutions import directory as sandbox_directory
from services.institutions.directory import InstitutionDirectory
from services.institutions.domain import decide_map, mapping_id_for
from services.institutions.seed import SeedError, SeedInstitution, load_seed, open_directory
from services.providers.registry import ADAPTER_FACTORIES
from tests.unit.fake_institution_store import InMemoryInstitutionStore

pytestmark = pytest.mark.unit

NOW = datetime(2025, 4, 14, 10, 32, tzinfo=UTC)
KNOWN = frozenset(ADAPTER_FACTORIES)
SANDBOX_SEED = 7  # the sandbox's default


def entry(id_: str, region: str, providers: tuple[str, ...] | None = None) -> SeedInstitution:
    return SeedInstitution(id=id_, name=id_.title(), region=region, providers=providers)


async def directory_from(
    store: InMemoryInstitutionStore, seed: list[SeedInstitution]
) -> InstitutionDirectory:
    return await open_directory(
        store, hierarchy=DEFAULT_HIERARCHY, known=KNOWN, now=lambda: NOW, seed=seed
    )


def test_the_region_defaults_are_the_products() -> None:
    assert DEFAULT_HIERARCHY["US"] == ("plaid", "mx", "finicity")
    assert DEFAULT_HIERARCHY["MX"] == ("belvo", "mx")
    assert DEFAULT_HIERARCHY["CRYPTO"] == ("bitso", "blockchain")


async def test_a_mapped_institution_gets_its_own_order_and_others_their_regions() -> None:
    seed = [entry("chase", "US", ("mx", "plaid")), entry("banorte", "MX")]
    directory = await directory_from(InMemoryInstitutionStore(), seed)

    assert directory.providers_for("chase", "US") == ("mx", "plaid")
    assert directory.providers_for("banorte", "MX") == ("belvo", "mx")
    assert directory.providers_for("unheard_of_bank", "US") == ("plaid", "mx", "finicity")
    assert directory.providers_for(None, "CRYPTO") == ("bitso", "blockchain")
    assert directory.providers_for("unheard_of_bank", "ZZ") == ()


async def test_the_mapping_wins_over_the_region_a_command_names() -> None:
    directory = await directory_from(InMemoryInstitutionStore(), [entry("banorte", "MX")])

    assert directory.providers_for("banorte", "US") == ("belvo", "mx")


async def test_the_first_start_seeds_every_entry_and_the_next_seeds_nothing() -> None:
    store = InMemoryInstitutionStore()
    seed = [entry("chase", "US"), entry("banorte", "MX"), entry("bitso", "CRYPTO")]

    first = await directory_from(store, seed)
    appended = store.appends
    second = await directory_from(store, seed)

    assert len(first) == len(second) == 3
    assert appended == 1, "seeded in one transaction"
    assert store.appends == 1
    assert second.get("bitso") == first.get("bitso")


async def test_a_change_made_by_command_survives_a_restart_with_the_same_seed() -> None:
    store = InMemoryInstitutionStore()
    seed = [entry("chase", "US")]
    directory = await directory_from(store, seed)
    state = directory.get("chase")
    cmd = MapInstitution(
        command_id="map-1",
        space_id="ops",
        institution_id="chase",
        region="US",
        providers=("finicity", "plaid"),
        actor="ana@ops",
        reason="plaid outage",
    )
    assert await store.append(decide_map(state, cmd, known=KNOWN, now=NOW, trace={}))

    restarted = await directory_from(store, seed)

    assert restarted.providers_for("chase", "US") == ("finicity", "plaid")
    after = restarted.get("chase")
    assert after is not None and after.changed_by == "ana@ops"


async def test_a_replica_that_loses_the_seeding_race_takes_the_winners_events() -> None:
    store = InMemoryInstitutionStore()
    winner = await directory_from(InMemoryInstitutionStore(), [entry("chase", "US", ("mx",))])
    winners_state = winner.get("chase")
    assert winners_state is not None
    other = InMemoryInstitutionStore()
    await directory_from(other, [entry("chase", "US", ("mx",))])
    store.ahead_of_next_append = await other.load(mapping_id_for("chase"))

    directory = await directory_from(store, [entry("chase", "US"), entry("banorte", "MX")])

    assert directory.providers_for("chase", "US") == ("mx",)
    assert len(store.streams[mapping_id_for("chase")]) == 1
    assert directory.providers_for("banorte", "MX") == ("belvo", "mx")
    assert len(store.streams[mapping_id_for("banorte")]) == 1


async def test_a_seed_entry_without_providers_in_a_region_without_defaults_is_refused() -> None:
    with pytest.raises(SeedError, match="'maple_leaf': an institution needs at least one"):
        await directory_from(InMemoryInstitutionStore(), [entry("maple_leaf", "CA")])


async def test_the_directory_ignores_stale_repeated_and_foreign_events() -> None:
    store = InMemoryInstitutionStore()
    directory = await directory_from(store, [entry("chase", "US")])
    seeded_event = (await store.load(mapping_id_for("chase")))[0]
    cmd = MapInstitution(
        command_id="map-1",
        space_id="ops",
        institution_id="chase",
        region="US",
        providers=("mx",),
        actor="ana@ops",
        reason="plaid outage",
    )
    changed = decide_map(directory.get("chase"), cmd, known=KNOWN, now=NOW, trace={})
    foreign = BreakerHalfOpened(
        originator_id=mapping_id_for("chase"),
        originator_version=9,
        timestamp=NOW,
        provider="plaid",
        region="US",
    )

    directory.apply([*changed, *changed, seeded_event, foreign])

    state = directory.get("chase")
    assert state is not None
    assert (state.version, state.providers) == (2, ("mx",))


def test_the_seed_file_loads_and_every_entry_names_known_providers() -> None:
    seed = load_seed()

    assert {e.region for e in seed} >= {"US", "MX", "CRYPTO"}
    for item in seed:
        providers = item.providers or DEFAULT_HIERARCHY[item.region]
        assert set(providers) <= KNOWN, item.id
        assert set(item.provider_ids) <= set(providers), item.id


def test_the_seed_holds_the_sandboxs_institutions_with_the_sandboxs_ids() -> None:
    by_name = {e.name: e for e in load_seed()}

    for fake in sandbox_directory(SANDBOX_SEED):
        seeded = by_name[fake.name]
        assert seeded.region == fake.country
        assert seeded.provider_ids.get("mx") == fake.mx_code
        if fake.country == "MX":
            assert seeded.provider_ids["belvo"] == belvo_api_data.institution_name(fake)
        else:
            assert seeded.provider_ids["plaid"] == fake.plaid_id
            assert seeded.provider_ids["finicity"] == finicity_api_data.institution_id(fake)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[institutions]]\nid = "a"\nname = "A"\nregion = "US"\ncolour = "red"', "colour"),
        ('[[institutions]]\nid = "a"\nname = "A"\nregion = "US"\n' * 2, "listed twice: a"),
        ("institutions = 3", "Expected `array`"),
    ],
)
def test_a_broken_seed_file_is_refused_naming_the_problem(
    tmp_path: Path, text: str, words: str
) -> None:
    path = tmp_path / "seed.toml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(SeedError, match=re.escape(words)):
        load_seed(path)
