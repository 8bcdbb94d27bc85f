"""The seed file, and the directory built at start: seeded once, then loaded from events.

`seed.toml` holds the institutions syncyard knows out of the box. The first
start records each as an `InstitutionMappingSeeded` event; later starts find
those events and leave them alone, so a change made by command is never
undone by the seed. Several replicas starting at once race on the event
store's version check, and exactly one of them records each institution.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import msgspec

from events.base import DomainEvent
from services.institutions.directory import InstitutionDirectory
from services.institutions.domain import MappingRefusedError, decide_seed
from services.institutions.store import InstitutionStore

SEED_PATH = Path(__file__).with_name("seed.toml")


class SeedInstitution(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One institution: `providers` in failover order, or its region's order when left out."""

    id: str
    name: str
    region: str
    providers: tuple[str, ...] | None = None
    provider_ids: dict[str, str] = {}


class SeedFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    institutions: list[SeedInstitution]


class SeedError(ValueError):
    """A seed file syncyard refuses to start with; the message names the entry."""


def load_seed(path: Path = SEED_PATH) -> list[SeedInstitution]:
    try:
        seed = msgspec.toml.decode(path.read_bytes(), type=SeedFile)
    except msgspec.DecodeError as exc:
        raise SeedError(f"{path.name}: {exc}") from None
    repeated = sorted(i for i, n in Counter(e.id for e in seed.institutions).items() if n > 1)
    if repeated:
        raise SeedError(f"{path.name}: institutions listed twice: {', '.join(repeated)}")
    return seed.institutions


async def open_directory(
    store: InstitutionStore,
    *,
    hierarchy: Mapping[str, tuple[str, ...]],
    known: frozenset[str],
    now: Callable[[], datetime],
    seed: list[SeedInstitution] | None = None,
    source: str = SEED_PATH.name,
) -> InstitutionDirectory:
    """The directory as recorded, after seeding whatever the store does not hold yet.

    Raises SeedError for an entry naming no provider, one twice, or one unknown.
    """
    directory = InstitutionDirectory(hierarchy)
    directory.apply(await store.load_all())
    entries = load_seed() if seed is None else seed
    batch = [
        _seeded(entry, hierarchy, known, now(), source)
        for entry in entries
        if directory.get(entry.id) is None
    ]
    # One transaction for the usual case; entry by entry only when another
    # replica is seeding at the same moment and the batch lost somewhere.
    if not batch or await store.append(batch):
        directory.apply(batch)
        return directory
    for event in batch:
        events = [event] if await store.append([event]) else await store.load(event.originator_id)
        directory.apply(events)
    return directory


def _seeded(
    entry: SeedInstitution,
    hierarchy: Mapping[str, tuple[str, ...]],
    known: frozenset[str],
    now: datetime,
    source: str,
) -> DomainEvent:
    try:
        (event,) = decide_seed(
            None,
            institution_id=entry.id,
            name=entry.name,
            region=entry.region,
            providers=entry.providers or hierarchy.get(entry.region, ()),
            provider_ids=dict(entry.provider_ids),
            source=source,
            known=known,
            now=now,
        )
    except MappingRefusedError as exc:
        raise SeedError(f"{source}: institution {entry.id!r}: {exc}") from None
    return event
