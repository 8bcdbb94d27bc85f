"""The fake Finicity's data: customers' logins, accounts and transactions, in Finicity's shapes.

Every customer id holds two institution logins, each its person's bank at
one institution (`truth.py`): the first at the person's usual bank, the
second at another US bank. An adapter must pick its link's login out of the
customer's accounts and transactions, as at Finicity. Ids are numeric, as
Finicity's are, and a transaction keeps its id when it posts; descriptions
are the card network's descriptors, with Finicity's cleaned payee name
under `categorization`.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from sandbox.institutions import FakeInstitution, directory
from sandbox.truth import (
    ANCHOR_DATE,
    Bank,
    BankTransaction,
    TruthBook,
    default_institution,
    second_institution,
)
from sandbox.views import account_id, numeric, transaction_id

LOGINS_PER_CUSTOMER = 2
_ACCOUNT_TYPES = {"CHECKING": "checking", "SAVINGS": "savings", "CREDIT_CARD": "creditCard"}
# Finicity's API error codes, with the HTTP status it answers them with.
API_ERRORS: dict[str, int] = {
    "10001": 401, "10021": 401, "10022": 401, "10023": 401, "10024": 401, "10026": 401,
    "12401": 404, "24302": 401, "1000": 400, "10005": 400, "10010": 400, "10100": 400,
    "14001": 404, "14020": 400, "38007": 404, "331": 408, "325": 500, "5006": 500,
    "18001": 409, "11000": 409,
}  # fmt: skip


def is_aggregation_code(code: str) -> bool:
    return code.isdigit() and len(code) <= 4 and code not in API_ERRORS


def login_ids(customer_id: str) -> list[str]:
    return [numeric(f"{customer_id}:login:{n}") for n in range(LOGINS_PER_CUSTOMER)]


def login_bank(truth: TruthBook, person: str, index: int) -> Bank:
    """The bank behind the person's `index`th institution login."""
    pick = default_institution if index == 0 else second_institution
    return truth.bank(person, pick(truth.seed, person))


def institution_id(institution: FakeInstitution) -> str:
    return numeric(f"institution:{institution.name}", 6)


def institutions(seed: int) -> list[FakeInstitution]:
    """The US and Canadian banks Finicity serves."""
    return [i for i in directory(seed) if i.country in {"US", "CA"}]


def institution_body(institution: FakeInstitution) -> dict[str, Any]:
    return {
        "id": int(institution_id(institution)),
        "name": institution.name,
        "transAgg": True,
        "ach": "auth" in institution.products,
        "urlHomeApp": institution.url,
        "status": "online",
        "address": {"country": institution.country},
        "currency": "CAD" if institution.country == "CA" else "USD",
    }


def _epoch(day: str) -> int:
    moment = datetime.combine(datetime.fromisoformat(day).date(), time(12), tzinfo=UTC)
    return int(moment.timestamp())


def account_body(
    bank: Bank, customer_id: str, login_id: str, index: int, *, status_code: int = 0
) -> list[dict[str, Any]]:
    created = _epoch(ANCHOR_DATE.isoformat()) - 86400 * (30 + 10 * index)
    rows = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        rows.append(
            {
                "id": account_id("finicity", bank, a),
                "number": a.number,
                "accountNumberDisplay": a.number[-4:],
                "name": a.name,
                "balance": current,
                "type": _ACCOUNT_TYPES.get(a.kind, "checking"),
                "aggregationStatusCode": status_code,
                "status": "active",
                "customerId": customer_id,
                "institutionId": institution_id(bank.institution),
                "institutionLoginId": int(login_id),
                "currency": bank.currency,
                "createdDate": created,
                "detail": {"availableBalanceAmount": available} if available else {},
            }
        )
    return rows


def transaction_body(bank: Bank, t: BankTransaction, customer_id: str) -> dict[str, Any]:
    account = next(a for a in bank.accounts if a.id == t.account_id)
    transacted = t.authorized_at if t.authorized_at is not None else t.created_at
    return {
        "id": int(transaction_id("finicity", bank, t.id)),
        "amount": -t.amount,
        "accountId": int(account_id("finicity", bank, account)),
        "customerId": int(customer_id),
        "status": "pending" if t.pending else "active",
        "description": t.description,
        # Finicity dates a pending transaction's posting on its transaction date.
        "postedDate": t.posted_at if t.posted_at is not None else transacted,
        "transactionDate": transacted,
        "createdDate": t.created_at,
        "categorization": {"normalizedPayeeName": t.counterparty, "country": "USA"},
    }
