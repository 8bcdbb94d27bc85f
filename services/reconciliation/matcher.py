"""Recognising one purchase reported by two providers: pure matching, no I/O.

A connection linked at two providers gets the same purchase twice when a sync
fails over. Each purchase gets one stable syncyard transaction id; a provider's
transaction is the same purchase as one already seen from another provider
when the amount is equal to the cent, the dates are within a few days (posting
dates differ between aggregators) and the descriptions are alike once
normalised (aggregators clean merchant names differently).
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

_NAMESPACE = uuid.UUID("a3f1c0de-6c2b-4e9f-9d3e-2b7f1f0e5a11")
_NOISE = re.compile(r"[^a-z ]+")
_SPACES = re.compile(r"\s+")


class Tolerance(msgspec.Struct, frozen=True, kw_only=True):
    days: int = 3
    min_similarity: float = 0.6
    # While either side is pending its amount may still change (a tip, a hold):
    # then only descriptions this alike let amounts differ.
    pending_similarity: float = 0.8


class Seen(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's transaction as the ledger keeps it."""

    syncyard_id: str
    provider: str
    provider_id: str
    amount_cents: int
    posted: date
    description: str


def normalise(description: str) -> str:
    """ "SQ *BLUE BOTTLE COFFEE #12 OAKLAND" → "sq blue bottle coffee oakland"."""
    return _SPACES.sub(" ", _NOISE.sub(" ", description.lower())).strip()


def cents(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


def as_seen(provider: str, txn: dict[str, Any], syncyard_id: str = "") -> Seen:
    return Seen(
        syncyard_id=syncyard_id,
        provider=provider,
        provider_id=str(txn["transaction_id"]),
        amount_cents=cents(txn["amount"]),
        posted=date.fromisoformat(str(txn["date"])[:10]),
        description=normalise(str(txn.get("name") or txn.get("description") or "")),
    )


def new_id(connection_key: str, provider: str, provider_id: str) -> str:
    """Deterministic, so a redelivered sync assigns the same id again."""
    return str(uuid.uuid5(_NAMESPACE, f"{connection_key}/{provider}/{provider_id}"))


def similar(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if a in b or b in a:
        return 1.0
    return difflib.SequenceMatcher(None, a, b).ratio()


def match(
    incoming: Seen, candidates: Iterable[Seen], taken: set[str], tolerance: Tolerance
) -> Seen | None:
    """The best purchase from another provider that `incoming` is, if any.

    `taken` holds syncyard ids already matched to this provider: one purchase
    maps to at most one transaction per provider.
    """
    best: tuple[float, int, Seen] | None = None
    for seen in candidates:
        if seen.provider == incoming.provider or seen.syncyard_id in taken:
            continue
        if seen.amount_cents != incoming.amount_cents:
            continue
        gap = abs((seen.posted - incoming.posted).days)
        if gap > tolerance.days:
            continue
        score = similar(seen.description, incoming.description)
        if score < tolerance.min_similarity:
            continue
        if best is None or (score, -gap) > (best[0], best[1]):
            best = (score, -gap, seen)
    return best[2] if best else None


def assign(
    connection_key: str,
    provider: str,
    transactions: Sequence[dict[str, Any]],
    known: Sequence[Seen],
    tolerance: Tolerance,
) -> tuple[dict[str, str], list[Seen], set[str]]:
    """Syncyard ids for a page of one provider's transactions.

    Returns (provider id → syncyard id, new ledger rows, provider ids that are
    purchases upstream has already been sent through another provider).
    """
    mine = {s.provider_id: s.syncyard_id for s in known if s.provider == provider}
    taken = {s.syncyard_id for s in known if s.provider == provider}
    # An id is born from the first provider that reported the purchase; the
    # others' copies are the ones upstream must not get again.
    born_elsewhere = {
        s.syncyard_id
        for s in known
        if s.provider != provider
        and s.syncyard_id == new_id(connection_key, s.provider, s.provider_id)
    }
    ids: dict[str, str] = {}
    rows: list[Seen] = []
    already_sent: set[str] = set()
    for txn in transactions:
        seen = as_seen(provider, txn)
        if seen.provider_id in mine:
            ids[seen.provider_id] = mine[seen.provider_id]
            if mine[seen.provider_id] in born_elsewhere:
                already_sent.add(seen.provider_id)
            continue
        twin = match(seen, [*known, *rows], taken, tolerance)
        if twin is not None:
            syncyard_id = twin.syncyard_id
            already_sent.add(seen.provider_id)
        else:
            syncyard_id = new_id(connection_key, provider, seen.provider_id)
        taken.add(syncyard_id)
        ids[seen.provider_id] = syncyard_id
        rows.append(msgspec.structs.replace(seen, syncyard_id=syncyard_id))
    return ids, rows, already_sent
