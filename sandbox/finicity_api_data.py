"""The fake Finicity's data: customers' logins, accounts and transactions, in Finicity's shapes.

Every customer id holds two institution logins, each a seeded fake item, so
an adapter must pick its link's login out of the customer's accounts and
transactions, as at Finicity. Ids are numeric, as Finicity's are.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time
from typing import Any

from sandbox.data import ANCHOR_DATE, FakeItem, FakeTransaction, fake_item
from sandbox.institutions import FakeInstitution, directory

LOGINS_PER_CUSTOMER = 2
_ACCOUNT_TYPES = {"CHECKING": "checking", "SAVINGS": "savings", "CREDIT_CARD": "creditCard"}
# Finicity's API error codes, with the HTTP status it answers them with.
API_ERRORS: dict[str, int] = {
    "10001": 401, "10021": 401, "10022": 401, "10023": 401, "10024": 401, "10026": 401,
    "12401": 404, "24302": 401, "1000": 400, "10005": 400, "10010": 400, "10100": 400,
    "14001": 404, "14020": 400, "38007": 404, "331": 408, "325": 500, "5006": 500,
    "18001": 409, "11000": 409,
}  # fmt: skip


def numeric(key: str, digits: int = 10) -> str:
    """A stable numeric id for `key`, Finicity-style."""
    value = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) % (9 * 10 ** (digits - 1))
    return str(value + 10 ** (digits - 1))


def is_aggregation_code(code: str) -> bool:
    return code.isdigit() and len(code) <= 4 and code not in API_ERRORS


def login_ids(customer_id: str) -> list[str]:
    return [numeric(f"{customer_id}:login:{n}") for n in range(LOGINS_PER_CUSTOMER)]


def login_item(seed: int, customer_id: str, login_id: str) -> FakeItem:
    return fake_item(seed, "finicity", f"{customer_id}:{login_id}")


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
    seed: int, customer_id: str, login_id: str, index: int, *, status_code: int = 0
) -> list[dict[str, Any]]:
    item = login_item(seed, customer_id, login_id)
    created = _epoch(ANCHOR_DATE.isoformat()) - 86400 * (30 + 10 * index)
    inst = institutions(seed)[int(login_id) % len(institutions(seed))]
    return [
        {
            "id": numeric(a.id),
            "number": a.number,
            "accountNumberDisplay": a.number[-4:],
            "name": a.name,
            "balance": a.current,
            "type": _ACCOUNT_TYPES.get(a.kind, "checking"),
            "aggregationStatusCode": status_code,
            "status": "active",
            "customerId": customer_id,
            "institutionId": institution_id(inst),
            "institutionLoginId": int(login_id),
            "currency": "USD",
            "createdDate": created,
            "detail": {"availableBalanceAmount": a.available} if a.available else {},
        }
        for a in item.accounts
    ]


def transaction_body(t: FakeTransaction, customer_id: str) -> dict[str, Any]:
    when = _epoch(t.date)
    return {
        "id": int(numeric(t.id, 11)),
        "amount": -t.amount,
        "accountId": int(numeric(t.account_id)),
        "customerId": int(customer_id),
        "status": "pending" if t.pending else "active",
        "description": t.name.upper(),
        "memo": t.name,
        "postedDate": when,
        "transactionDate": when,
        "createdDate": when,
    }
