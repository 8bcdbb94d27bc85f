"""The ground truth: one seeded bank per person and institution, whose ledger grows over time.

A bank's history is a discrete-event simulation: card purchases arrive a
few hours apart, most as pending authorisations that post one to three days
later (sometimes for more, a tip) and some that the merchant releases
(withdrawn); bills and refunds post directly; payroll lands every fourteen
days; now and then the bank reverses or corrects a posted transaction. The
simulation runs from `HISTORY_START` to `HISTORY_END` when the bank is first
asked for, and `Bank.advance` runs it further while the sandbox serves.

Every arrival draws its randomness from its own seeded generator (seed,
person, institution, arrival number), and settlements are fixed when their
authorisation arrives, so the ledger depends only on the seed and on how far
it has been advanced, not on how the advances were cut up.

Amounts follow Plaid's convention: money out is positive. Times are epoch
seconds, UTC. Nothing here knows any provider: the views in `views.py` and
the provider modules dress this ledger in each provider's ids and shapes.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar, cast

import msgspec

from sandbox.institutions import FakeInstitution, default_for, directory

# A fixed "today", so data does not drift with the wall clock between runs.
ANCHOR_DATE = date(2025, 1, 31)
HISTORY_DAYS = 60
DAY_S = 86400
HOUR_S = 3600
_ANCHOR_MIDNIGHT = int(datetime.combine(ANCHOR_DATE, time(0), tzinfo=UTC).timestamp())
HISTORY_START = _ANCHOR_MIDNIGHT - HISTORY_DAYS * DAY_S
# The last second of the anchor day: the bank's clock when its history is done.
HISTORY_END = _ANCHOR_MIDNIGHT + DAY_S - 1
_EPOCH_DAY = date(1970, 1, 1)

CURRENCIES = {"US": "USD", "CA": "CAD", "MX": "MXN"}
# Rough prices in the local currency for the same basket, so a Mexican bank's
# coffee is not 4 pesos.
_PRICE_SCALE = {"USD": 1.0, "CAD": 1.35, "MXN": 17.0}

EventKind = Literal["authorized", "posted", "settled", "withdrawn", "amended"]
TransactionKind = Literal["card", "bill", "refund", "payroll"]
T = TypeVar("T")


class _Merchant(msgspec.Struct, frozen=True):
    name: str
    # The card network's raw descriptor; `{store}` is a store number per bank.
    descriptor: str
    low: float
    high: float
    # Restaurants and rides settle for more than they authorised (the tip).
    tipped: bool = False


_MERCHANTS = (
    _Merchant("Blue Bottle Coffee", "SQ *BLUE BOTTLE #{store} OAKLAND CA", 3.5, 14.0, True),
    _Merchant("Whole Foods Market", "WHOLEFDS MKT #{store} BERKELEY CA", 12.0, 180.0),
    _Merchant("Uber", "UBER *TRIP HELP.UBER.COM CA", 8.0, 60.0, True),
    _Merchant("Shell", "SHELL OIL 57{store} SAN LEANDRO CA", 25.0, 80.0),
    _Merchant("Amazon", "AMZN MKTP US*2K{store}QX1 AMZN.COM/BILL WA", 6.0, 250.0),
    _Merchant("Delta Air Lines", "DELTA AIR 006{store} ATLANTA GA", 120.0, 650.0),
    _Merchant("Trader Joe's", "TRADER JOE S #{store} OAKLAND CA", 10.0, 120.0),
    _Merchant("Chipotle", "CHIPOTLE {store} EMERYVILLE CA", 9.0, 28.0, True),
    _Merchant("DoorDash", "DD *DOORDASH {store} SAN FRANCISCO CA", 15.0, 70.0, True),
    _Merchant("Target", "TARGET 000{store} ALBANY CA", 8.0, 200.0),
)
_BILLS = (
    _Merchant("Con Edison", "CON ED OF NY DES:INTELL CK ID:{store}", 60.0, 190.0),
    _Merchant("Netflix", "NETFLIX.COM LOS GATOS CA", 15.49, 15.49),
    _Merchant("Spotify", "SPOTIFY USA 877-778-1161 NY", 11.99, 11.99),
    _Merchant("Verizon", "VZWRLSS*APOCC VISE {store} NJ", 45.0, 95.0),
)
_EMPLOYER = "ACME Corp"
_ACCOUNT_KINDS = (
    ("CHECKING", "Everyday Checking"),
    ("CREDIT_CARD", "Rewards Visa"),
    ("SAVINGS", "High Yield Savings"),
)


class BankAccount(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    name: str
    number: str
    opening_balance: float


class BankTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction as the bank knows it, after some event.

    `pending` while it has not posted; `withdrawn_at` set once released or
    reversed, after which it is no longer part of the account.
    `authorized_amount` is what the authorisation held (None for a direct
    posting); `amount` is what stands now. `counterparty` is a clean name for
    whoever is on the other side; `merchant` only when that is a merchant.
    """

    id: str
    account_id: str
    kind: TransactionKind
    amount: float
    authorized_amount: float | None
    description: str
    counterparty: str
    merchant: str | None
    authorized_at: int | None
    posted_at: int | None
    withdrawn_at: int | None
    created_at: int
    updated_at: int

    @property
    def pending(self) -> bool:
        return self.posted_at is None

    @property
    def was_pending(self) -> bool:
        """Authorised first, so a provider that re-ids postings has a pending id for it."""
        return self.authorized_at is not None

    @property
    def live(self) -> bool:
        return self.withdrawn_at is None

    @property
    def authorized_date(self) -> str | None:
        return iso_date(self.authorized_at) if self.authorized_at is not None else None

    @property
    def posted_date(self) -> str | None:
        return iso_date(self.posted_at) if self.posted_at is not None else None

    @property
    def date(self) -> str:
        """The bank's date: posted, or authorised while pending."""
        moment = self.posted_at if self.posted_at is not None else self.authorized_at
        return iso_date(self.created_at if moment is None else moment)


class BankEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change to the ledger, with the transaction as it stands after it."""

    seq: int
    at: int
    kind: EventKind
    transaction: BankTransaction


class _Due(msgspec.Struct, frozen=True, order=True):
    """A settlement (or release) fixed when its authorisation arrived, or the next payroll."""

    at: int
    order: int
    kind: Literal["settle", "release", "payroll"]
    transaction_id: str = ""
    amount: float = 0.0


def iso_date(epoch: int) -> str:
    return _iso_day(epoch // DAY_S)


def iso_time(epoch: int) -> str:
    day, second = divmod(epoch, DAY_S)
    hour, second = divmod(second, HOUR_S)
    minute, second = divmod(second, 60)
    return f"{_iso_day(day)}T{hour:02d}:{minute:02d}:{second:02d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_day(day: int) -> str:
    # By day, not by second: a ledger spans a few hundred days, and every view dates
    # each transaction again (issue #13: a new bank's views were half its first answer).
    return (_EPOCH_DAY + timedelta(days=day)).isoformat()


class Bank:
    """One person's accounts at one institution, and the ledger of everything that happened."""

    def __init__(self, seed: int, person: str, institution: FakeInstitution) -> None:
        self.seed = seed
        self.person = person
        self.institution = institution
        self.key = f"{seed}:{person}:{institution.plaid_id}"
        self.currency = CURRENCIES.get(institution.country, "USD")
        self._scale = _PRICE_SCALE[self.currency]
        setup = random.Random(f"{self.key}:setup")
        kinds = _ACCOUNT_KINDS[: setup.choice((2, 3))]
        self.accounts = tuple(
            BankAccount(
                id=f"acct_{n + 1}",
                kind=kind,
                name=name,
                number=str(setup.randrange(10**9, 10**10)),
                opening_balance=self._price(
                    setup.uniform(200, 1500) if kind == "CREDIT_CARD" else setup.uniform(800, 9000)
                ),
            )
            for n, (kind, name) in enumerate(kinds)
        )
        self._stores = {m.name: setup.randrange(10, 99) for m in (*_MERCHANTS, *_BILLS)}
        self._salary = self._price(setup.uniform(1800, 3600))
        self.transactions: dict[str, BankTransaction] = {}
        self.events: list[BankEvent] = []
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._due: list[_Due] = []
        self._arrivals = 0
        self._next_arrival = HISTORY_START + self._gap(0)
        first_payday = HISTORY_START + setup.randrange(0, 14) * DAY_S + 9 * HOUR_S
        heapq.heappush(self._due, _Due(first_payday, next(self._order), "payroll"))
        self.now = HISTORY_START
        self._run_until(HISTORY_END)
        # Every provider first aggregated the bank here: what came before is
        # its history, what follows reaches it as changes.
        self.history = len(self.events)
        self._views: dict[str, tuple[int, Any]] = {}

    # -- reading -----------------------------------------------------------

    @property
    def version(self) -> int:
        return len(self.events)

    def view(self, name: str, build: Callable[[Bank], T]) -> T:
        """`build(self)`, remembered until the ledger changes (views are read on every call)."""
        cached = self._views.get(name)
        if cached is not None and cached[0] == self.version:
            return cast("T", cached[1])
        value = build(self)
        self._views[name] = (self.version, value)
        return value

    def at_history_end(self) -> dict[str, BankTransaction]:
        """Each transaction as it stood when the providers first aggregated the bank."""
        return {e.transaction.id: e.transaction for e in self.events[: self.history]}

    def live(self) -> list[BankTransaction]:
        """The account's transactions now (none withdrawn), oldest first."""
        return sorted(
            (t for t in self.transactions.values() if t.live), key=lambda t: (t.date, t.id)
        )

    def balances(self, account: BankAccount) -> tuple[float, float | None]:
        """(current, available): posted money moves `current`, pending holds `available`."""
        posted = sum(
            t.amount
            for t in self.transactions.values()
            if t.account_id == account.id and t.live and not t.pending
        )
        held = sum(
            t.amount
            for t in self.transactions.values()
            if t.account_id == account.id and t.live and t.pending
        )
        if account.kind == "CREDIT_CARD":
            return round(account.opening_balance + posted, 2), None
        current = round(account.opening_balance - posted, 2)
        return current, round(current - held, 2)

    # -- time passing ------------------------------------------------------

    def advance(self, *, days: float | None = None, events: int | None = None) -> list[BankEvent]:
        """Let `days` pass, or the next `events` things happen; answers what happened."""
        start = len(self.events)
        if days is not None:
            self._run_until(self.now + round(days * DAY_S))
        for _ in range(events or 0):
            self._step()
        return self.events[start:]

    def _run_until(self, until: int) -> None:
        while self._next_at() <= until:
            self._step()
        self.now = max(self.now, until)

    def _next_at(self) -> int:
        return min(self._next_arrival, self._due[0].at) if self._due else self._next_arrival

    def _step(self) -> None:
        # Settlements fixed earlier go before an arrival at the same second.
        if self._due and self._due[0].at <= self._next_arrival:
            self._settle(heapq.heappop(self._due))
        else:
            n = self._arrivals
            self._arrivals += 1
            at = self._next_arrival
            self._next_arrival = at + self._gap(n + 1)
            self._arrive(n, at)
        self.now = max(self.now, self.events[-1].at)

    def _rng(self, *parts: object) -> random.Random:
        return random.Random(":".join((self.key, *map(str, parts))))

    def _gap(self, n: int) -> int:
        return int(self._rng("gap", n).uniform(4 * HOUR_S, 36 * HOUR_S))

    def _price(self, value: float) -> float:
        return round(value * self._scale, 2)

    def _account(self, kind: str) -> BankAccount:
        found = [a for a in self.accounts if a.kind == kind]
        return found[0] if found else self.accounts[0]

    def _record(self, at: int, kind: EventKind, transaction: BankTransaction) -> None:
        self.transactions[transaction.id] = transaction
        self.events.append(
            BankEvent(seq=len(self.events) + 1, at=at, kind=kind, transaction=transaction)
        )

    def _new(
        self,
        at: int,
        *,
        kind: TransactionKind,
        account: BankAccount,
        amount: float,
        merchant: _Merchant | None,
        counterparty: str,
        description: str,
        pending: bool,
    ) -> BankTransaction:
        return BankTransaction(
            id=f"bt_{next(self._ids):06d}",
            account_id=account.id,
            kind=kind,
            amount=amount,
            authorized_amount=amount if pending else None,
            description=description,
            counterparty=counterparty,
            merchant=merchant.name if merchant else None,
            authorized_at=at if pending else None,
            posted_at=None if pending else at,
            withdrawn_at=None,
            created_at=at,
            updated_at=at,
        )

    def _descriptor(self, merchant: _Merchant) -> str:
        return merchant.descriptor.format(store=self._stores[merchant.name])

    def _arrive(self, n: int, at: int) -> None:
        rng = self._rng("arrival", n)
        roll = rng.random()
        if roll < 0.03 and self._reverse(rng, at):
            return
        if roll < 0.06 and self._amend(rng, at):
            return
        if roll < 0.14:
            bill = rng.choice(_BILLS)
            amount = self._price(rng.uniform(bill.low, bill.high))
            self._post_directly(
                at, kind="bill", account=self._account("CHECKING"), amount=amount, merchant=bill
            )
            return
        merchant = rng.choice(_MERCHANTS)
        card = self._account("CREDIT_CARD") if rng.random() < 0.65 else self._account("CHECKING")
        amount = self._price(rng.uniform(merchant.low, merchant.high))
        if roll < 0.18:
            self._post_directly(
                at, kind="refund", account=card, amount=-amount, merchant=merchant, prefix="REFUND "
            )
            return
        if rng.random() < 0.15:
            self._post_directly(at, kind="card", account=card, amount=amount, merchant=merchant)
            return
        authorised = self._new(
            at,
            kind="card",
            account=card,
            amount=amount,
            merchant=merchant,
            counterparty=merchant.name,
            description=self._descriptor(merchant),
            pending=True,
        )
        self._record(at, "authorized", authorised)
        if rng.random() < 0.08:
            release_at = at + rng.randrange(2 * DAY_S, 5 * DAY_S)
            heapq.heappush(self._due, _Due(release_at, next(self._order), "release", authorised.id))
            return
        settled = amount
        if merchant.tipped and rng.random() < 0.6:
            settled = round(amount * rng.uniform(1.15, 1.25), 2)
        settle_at = at + rng.randrange(20 * HOUR_S, 72 * HOUR_S)
        heapq.heappush(
            self._due, _Due(settle_at, next(self._order), "settle", authorised.id, settled)
        )

    def _post_directly(
        self,
        at: int,
        *,
        kind: TransactionKind,
        account: BankAccount,
        amount: float,
        merchant: _Merchant,
        prefix: str = "",
    ) -> None:
        posted = self._new(
            at,
            kind=kind,
            account=account,
            amount=amount,
            merchant=merchant,
            counterparty=merchant.name,
            description=prefix + self._descriptor(merchant),
            pending=False,
        )
        self._record(at, "posted", posted)

    def _settle(self, due: _Due) -> None:
        if due.kind == "payroll":
            checking = self._account("CHECKING")
            payroll = self._new(
                due.at,
                kind="payroll",
                account=checking,
                amount=-self._salary,
                merchant=None,
                counterparty=f"{_EMPLOYER} Payroll",
                description=f"{_EMPLOYER.upper()} DES:PAYROLL ID:{due.at // DAY_S}",
                pending=False,
            )
            self._record(due.at, "posted", payroll)
            heapq.heappush(self._due, _Due(due.at + 14 * DAY_S, next(self._order), "payroll"))
            return
        before = self.transactions[due.transaction_id]
        if due.kind == "release":
            after = msgspec.structs.replace(before, withdrawn_at=due.at, updated_at=due.at)
            self._record(due.at, "withdrawn", after)
            return
        after = msgspec.structs.replace(
            before, amount=due.amount, posted_at=due.at, updated_at=due.at
        )
        self._record(due.at, "settled", after)

    def _recent_posted(self, at: int) -> list[BankTransaction]:
        return [
            t
            for t in self.transactions.values()
            if t.kind == "card"
            and t.live
            and t.posted_at is not None
            and at - t.posted_at < 10 * DAY_S
        ]

    def _reverse(self, rng: random.Random, at: int) -> bool:
        """The bank takes back a recent posted card charge (a dispute won, a duplicate)."""
        candidates = self._recent_posted(at)
        if not candidates:
            return False
        chosen = rng.choice(sorted(candidates, key=lambda t: t.id))
        self._record(
            at, "withdrawn", msgspec.structs.replace(chosen, withdrawn_at=at, updated_at=at)
        )
        return True

    def _amend(self, rng: random.Random, at: int) -> bool:
        """The bank corrects a recent posted charge (a foreign-exchange fee folded in)."""
        candidates = self._recent_posted(at)
        if not candidates:
            return False
        chosen = rng.choice(sorted(candidates, key=lambda t: t.id))
        amount = round(chosen.amount * 1.03, 2)
        self._record(at, "amended", msgspec.structs.replace(chosen, amount=amount, updated_at=at))
        return True


class TruthBook:
    """Every bank the sandbox has been asked about, made on first use; reset drops them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._banks: dict[tuple[str, str], Bank] = {}

    def reset(self) -> None:
        self._banks.clear()

    def bank(self, person: str, institution: FakeInstitution | None = None) -> Bank:
        """The person's bank at `institution` (by default the person's own usual bank)."""
        chosen = institution or default_institution(self.seed, person)
        key = (person, chosen.plaid_id)
        found = self._banks.get(key)
        if found is None:
            found = self._banks[key] = Bank(self.seed, person, chosen)
        return found


def default_institution(seed: int, person: str) -> FakeInstitution:
    """The bank a person has when no link flow chose one: the same at every provider."""
    return default_for(seed, person)


def second_institution(seed: int, person: str) -> FakeInstitution:
    """Another US bank of the person's (Finicity's second institution login)."""
    first = default_institution(seed, person)
    us = [i for i in directory(seed) if i.country == "US" and i != first]
    return us[sum(map(ord, person)) % len(us)]


def find_institution(seed: int, key: str) -> FakeInstitution | None:
    """An institution named by any provider's id for it, or its name."""
    for institution in directory(seed):
        if key in (institution.plaid_id, institution.mx_code, institution.name):
            return institution
    return None
