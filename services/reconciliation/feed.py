"""A link's page of changes, reconciled into the account's feed: pure, no I/O.

Every provider transaction is given the syncyard transaction it is, by these
rules, tried in order:

1. **same_id**: the provider reported this id before. A changed content is a
   `modified` entry; the same content again is nothing.
2. **pending_posted**: the provider's posted transaction names its pending one
   (Plaid's `pending_transaction_id`): the same syncyard transaction,
   `modified`; the provider's removal of the pending id is then absorbed.
3. **cross_provider**: another provider reported the same purchase, one this
   provider has not claimed yet: equal amounts to the cent, dates within
   `Tolerance.days`, descriptions alike once normalised (`matcher.similar`).
   While either side is pending the amount may differ by up to a quarter
   (tips, holds) if the descriptions are alike beyond
   `Tolerance.pending_similarity`, or merely alike when the card was used
   on the same day at both (a clean name against a raw descriptor with its
   city rarely scores higher). Descriptions too unlike to compare (a
   biller's code against its name) still match when nothing is ambiguous:
   exactly one unclaimed transaction of that amount within a day, and one
   of that amount in the page. When several qualify (two identical coffees
   on one day) the rule is: the closest date, then the same amount before
   a drifted one, then the most alike description, then the one the feed
   delivered first.
   The choice and the number of candidates are recorded either way. If the
   content is what upstream already has, no entry is made (a purchase is
   delivered once, whichever provider reported it first); otherwise
   `modified` (e.g. the backup's pending, now posted at the primary).
4. **new**: none of the above: a new syncyard transaction, `added`.

A removal is a `removed` entry for a transaction the feed still holds, unless
rule 2 absorbed it: only the pending id a posted transaction of the walk
named gives way; the posted id's own removal (a reversal) is a removal. A
provider need not report a posting on the page that removes its pending id
(Plaid promises only the same update), and a walk may end between the two:
so a pending id's removal in a walk the provider has more for is *held*,
neither a removal nor forgotten, and planned again with the link's next
walk, until a posting names it or the update ends (`has_more` false) and it
is a removal. A removed transaction stays removed: a provider still listing
it later changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import msgspec

from events.feed import FeedChange, FeedTransaction, MatchReason
from services.reconciliation.matcher import Tolerance, cents, new_id, normalise, similar

PENDING_AMOUNT_DRIFT = Decimal("0.25")


class Known(msgspec.Struct, frozen=True, kw_only=True):
    """One provider transaction as the account's index holds it."""

    syncyard_id: str
    provider: str
    provider_id: str
    amount_cents: int
    posted: date
    authorized: date | None  # when the card was used: the date providers agree on best
    description: str  # normalised
    pending: bool
    fingerprint: str  # of the content upstream last received for it
    gone: bool = False  # the provider no longer lists this id
    withdrawn: bool = False  # its syncyard transaction was removed from the feed
    position: int = 0  # the feed position that first delivered its transaction


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """An entry to append, before it has its position."""

    change: FeedChange
    syncyard_id: str
    provider_id: str
    transaction: FeedTransaction | None
    match: MatchReason
    candidates: int = 0


class Recognised(msgspec.Struct, frozen=True, kw_only=True):
    """A provider transaction matched to one the feed holds, with nothing new to deliver."""

    provider_id: str
    syncyard_id: str
    match: MatchReason
    transaction: FeedTransaction
    candidates: int = 0
    delivered_at: int = 0


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[Planned]
    recognised: list[Recognised]
    index: list[Known]  # the index rows this page writes (new or changed)
    held: list[str] = []  # pending ids removed before the update ended: plan them again


def feed_transaction(txn: dict[str, Any]) -> FeedTransaction:
    """A provider's normalised transaction dict as upstream receives it."""
    authorized = txn.get("authorized_date")
    return FeedTransaction(
        provider_account_id=str(txn.get("account_id") or ""),
        amount=str(Decimal(str(txn["amount"]))),
        iso_currency_code=txn.get("iso_currency_code"),
        date=date.fromisoformat(str(txn["date"])[:10]),
        authorized_date=date.fromisoformat(str(authorized)[:10]) if authorized else None,
        name=str(txn.get("name") or txn.get("description") or ""),
        merchant_name=txn.get("merchant_name"),
        pending=bool(txn.get("pending", False)),
    )


def fingerprint(transaction: FeedTransaction) -> str:
    return hashlib.blake2b(msgspec.json.encode(transaction), digest_size=12).hexdigest()


def _known(
    syncyard_id: str, provider: str, provider_id: str, txn: FeedTransaction, *, position: int
) -> Known:
    return Known(
        syncyard_id=syncyard_id,
        provider=provider,
        provider_id=provider_id,
        amount_cents=cents(txn.amount),
        posted=txn.date,
        authorized=txn.authorized_date,
        description=normalise(txn.merchant_name or txn.name),
        pending=txn.pending,
        fingerprint=fingerprint(txn),
        position=position,
    )


def _alike(known: Known, txn: Known, tolerance: Tolerance) -> tuple[int, float] | None:
    """(date gap, similarity) if `known` may be the same purchase as `txn`, else None.

    Equal amounts within the window always qualify here; how alike the
    descriptions must be is `_Planner._cross_provider`'s call.
    """
    # A posting comes days after the card was used, and providers show either
    # date (and their own lag): the closest pair of the two is the gap.
    gap = min(
        abs((a - b).days)
        for a in (known.posted, known.authorized or known.posted)
        for b in (txn.posted, txn.authorized or txn.posted)
    )
    if gap > tolerance.days:
        return None
    score = similar(known.description, txn.description)
    if known.amount_cents == txn.amount_cents:
        return gap, score
    if not (known.pending or txn.pending):
        return None
    # The day the card was used is the date providers agree on best: the same
    # one at both lets a merely alike description carry a drifted amount.
    same_day = (known.authorized or known.posted) == (txn.authorized or txn.posted)
    if score < (tolerance.min_similarity if same_day else tolerance.pending_similarity):
        return None
    larger = max(abs(known.amount_cents), abs(txn.amount_cents))
    drift = Decimal(abs(known.amount_cents - txn.amount_cents)) / larger
    return (gap, score) if drift <= PENDING_AMOUNT_DRIFT else None


class PageOfChanges(msgspec.Struct, frozen=True, kw_only=True):
    """One link's changes as its adapter reported them (a walk of one or more pages)."""

    provider: str
    added: Sequence[dict[str, Any]] = ()
    modified: Sequence[dict[str, Any]] = ()
    removed: Sequence[str] = ()  # the removals held by the link's last walk first
    has_more: bool = False  # the provider's update goes on past this walk


def plan_page(
    connection_key: str,
    changes: PageOfChanges,
    known: Sequence[Known],
    *,
    next_position: int,
    tolerance: Tolerance | None = None,
) -> Plan:
    """The feed entries one provider's changes make, by the rules above.

    `known` holds the index rows that may matter: this provider's ids in the
    page (and the pending ids they name), and other providers' transactions
    around the page's dates. `next_position` is the position the first entry
    would get (new transactions remember it as where they were first delivered).
    """
    planner = _Planner(connection_key, changes.provider, known, next_position, tolerance)
    planner.has_more = changes.has_more
    planner.page_amounts = [cents(t["amount"]) for t in [*changes.added, *changes.modified]]
    for raw in [*changes.added, *changes.modified]:
        planner.take(str(raw["transaction_id"]), raw)
    for provider_id in changes.removed:
        planner.remove(str(provider_id))
    return Plan(
        entries=planner.entries,
        recognised=planner.recognised,
        index=list(planner.written.values()),
        held=planner.held,
    )


class _Planner:
    def __init__(
        self,
        connection_key: str,
        provider: str,
        known: Sequence[Known],
        next_position: int,
        tolerance: Tolerance | None,
    ) -> None:
        self.connection_key = connection_key
        self.provider = provider
        self.tolerance = tolerance or Tolerance()
        self.next_position = next_position
        self.mine = {k.provider_id: k for k in known if k.provider == provider}
        self.claimed = {k.syncyard_id for k in known if k.provider == provider}
        self.others = [k for k in known if k.provider != provider]
        self.withdrawn = {k.syncyard_id for k in known if k.withdrawn}
        self.entries: list[Planned] = []
        self.recognised: list[Recognised] = []
        self.written: dict[str, Known] = {}
        # Pending ids a posted transaction of this walk named: their removal is no removal.
        self.replaced: set[str] = set()
        self.page_amounts: list[int] = []
        self.has_more = False
        self.held: list[str] = []

    def _row(self, provider_id: str) -> Known | None:
        return self.written.get(provider_id) or self.mine.get(provider_id)

    def _entry(
        self, change: FeedChange, row: Known, txn: FeedTransaction | None, **why: Any
    ) -> None:
        self.entries.append(
            Planned(
                change=change,
                syncyard_id=row.syncyard_id,
                provider_id=row.provider_id,
                transaction=txn,
                **why,
            )
        )

    def take(self, provider_id: str, raw: dict[str, Any]) -> None:
        txn = feed_transaction(raw)
        # A new transaction remembers the position of the entry that delivers it.
        row = _known(
            "", self.provider, provider_id, txn, position=self.next_position + len(self.entries)
        )
        earlier = self._row(provider_id)
        if earlier is not None:
            self._same_id(earlier, row, txn)
            return
        pending_id = raw.get("pending_transaction_id")
        pending = self._row(str(pending_id)) if pending_id else None
        if pending is not None and pending.syncyard_id not in self.withdrawn:
            self.replaced.add(pending.provider_id)
            row = msgspec.structs.replace(
                row, syncyard_id=pending.syncyard_id, position=pending.position
            )
            self.written[provider_id] = row
            self._entry("modified", row, txn, match="pending_posted")
            return
        if self._cross_provider(row, txn):
            return
        row = msgspec.structs.replace(
            row, syncyard_id=new_id(self.connection_key, self.provider, provider_id)
        )
        self.claimed.add(row.syncyard_id)
        self.written[provider_id] = row
        self._entry("added", row, txn, match="new")

    def _same_id(self, earlier: Known, row: Known, txn: FeedTransaction) -> None:
        if earlier.gone or earlier.syncyard_id in self.withdrawn:
            return
        row = msgspec.structs.replace(
            row, syncyard_id=earlier.syncyard_id, position=earlier.position
        )
        if earlier.fingerprint != row.fingerprint:
            self._entry("modified", row, txn, match="same_id")
        self.written[row.provider_id] = row

    def _cross_provider(self, row: Known, txn: FeedTransaction) -> bool:
        candidates = [
            (alike, other)
            for other in self.others
            if other.syncyard_id not in self.claimed
            and other.syncyard_id not in self.withdrawn
            and (alike := _alike(other, row, self.tolerance)) is not None
        ]
        strong = [c for c in candidates if c[0][1] >= self.tolerance.min_similarity]
        if not strong:
            weak = [c for c in candidates if c[0][0] <= 1 and c[1].amount_cents == row.amount_cents]
            # Nothing ambiguous on either side: the one transaction of this amount.
            if len(weak) != 1 or self.page_amounts.count(row.amount_cents) != 1:
                return False
            strong = weak
        candidates = strong
        # The documented rule: closest date, same amount, most alike, delivered first.
        _, twin = min(
            candidates,
            key=lambda c: (
                c[0][0],
                c[1].amount_cents != row.amount_cents,
                -c[0][1],
                c[1].position,
            ),
        )
        self.claimed.add(twin.syncyard_id)
        row = msgspec.structs.replace(row, syncyard_id=twin.syncyard_id, position=twin.position)
        self.written[row.provider_id] = row
        if twin.pending != txn.pending or twin.amount_cents != row.amount_cents:
            self._entry("modified", row, txn, match="cross_provider", candidates=len(candidates))
        else:
            self.recognised.append(
                Recognised(
                    provider_id=row.provider_id,
                    syncyard_id=twin.syncyard_id,
                    match="cross_provider",
                    transaction=txn,
                    candidates=len(candidates),
                    delivered_at=twin.position,
                )
            )
        return True

    def remove(self, provider_id: str) -> None:
        earlier = self._row(provider_id)
        if earlier is None or earlier.gone or earlier.syncyard_id in self.withdrawn:
            return
        if provider_id in self.replaced:
            # The pending id gave way to its posted one: not a removal upstream.
            self.written[provider_id] = msgspec.structs.replace(earlier, gone=True)
            return
        if earlier.pending and self.has_more:
            # Its posting may be on a page still to come: decide once it has come.
            if provider_id not in self.held:
                self.held.append(provider_id)
            return
        self.written[provider_id] = msgspec.structs.replace(earlier, gone=True, withdrawn=True)
        self.withdrawn.add(earlier.syncyard_id)
        self._entry("removed", earlier, None, match="same_id")
