"""`/_admin/truth/{person}`: what a person's bank really holds, and making time pass there.

`GET` answers the bank's own view (its ids, accounts, amounts, dates, which
transactions are pending and which were withdrawn) and, for each, every
provider's id for it, so a test can map a feed's ids back to the bank.
`POST .../advance` with `{"days": n}` or `{"transactions": n}` runs the bank
forward (new charges, postings of earlier ones, now and then a withdrawal)
and answers what happened. `?institution=` (or `"institution"` in the body)
picks a bank other than the person's usual one, by any provider's id for
the institution or its name.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from sandbox.middleware import TRUTH
from sandbox.truth import Bank, BankEvent, BankTransaction, find_institution, iso_time
from sandbox.views import PROVIDERS, account_id, provider_date, provider_ids

MAX_ADVANCE_DAYS = 366
MAX_ADVANCE_TRANSACTIONS = 10_000


class Advance(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    days: float | None = None
    transactions: int | None = None
    institution: str | None = None


def _error(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _bank(request: web.Request, institution: str | None) -> Bank | web.Response:
    truth = request.config_dict[TRUTH]
    if institution is None:
        return truth.bank(request.match_info["person"])
    found = find_institution(truth.seed, institution)
    if found is None:
        return _error(f"no institution {institution!r}", 404)
    return truth.bank(request.match_info["person"], found)


def transaction_body(bank: Bank, t: BankTransaction) -> dict[str, Any]:
    return {
        "id": t.id,
        "account_id": t.account_id,
        "kind": t.kind,
        "amount": t.amount,
        "authorized_amount": t.authorized_amount,
        "authorized_date": t.authorized_date,
        "posted_date": t.posted_date,
        "date": t.date,
        "pending": t.pending,
        "was_pending": t.was_pending,
        "withdrawn": not t.live,
        "withdrawn_at": iso_time(t.withdrawn_at) if t.withdrawn_at is not None else None,
        "description": t.description,
        "counterparty": t.counterparty,
        "merchant": t.merchant,
        "updated_at": iso_time(t.updated_at),
        "providers": provider_ids(bank, t),
        "provider_dates": {p: provider_date(p, t) for p in PROVIDERS},
    }


def event_body(bank: Bank, event: BankEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": iso_time(event.at),
        "kind": event.kind,
        "transaction": transaction_body(bank, event.transaction),
    }


def truth_body(bank: Bank) -> dict[str, Any]:
    institution = bank.institution
    accounts = []
    for a in bank.accounts:
        current, available = bank.balances(a)
        accounts.append(
            {
                "id": a.id,
                "kind": a.kind,
                "name": a.name,
                "mask": a.number[-4:],
                "current": current,
                "available": available,
                "providers": {p: account_id(p, bank, a) for p in PROVIDERS},
            }
        )
    transactions = sorted(bank.transactions.values(), key=lambda t: (t.date, t.id))
    return {
        "person": bank.person,
        "institution": {
            "name": institution.name,
            "country": institution.country,
            "plaid_id": institution.plaid_id,
            "mx_code": institution.mx_code,
        },
        "currency": bank.currency,
        "now": iso_time(bank.now),
        "history_events": bank.history,
        "events": len(bank.events),
        "accounts": accounts,
        "transactions": [transaction_body(bank, t) for t in transactions],
    }


async def show_truth(request: web.Request) -> web.Response:
    """GET /_admin/truth/{person}[?institution=...]: the bank as it is now."""
    bank = _bank(request, request.query.get("institution"))
    if isinstance(bank, web.Response):
        return bank
    return web.json_response(truth_body(bank))


async def advance_truth(request: web.Request) -> web.Response:
    """POST /_admin/truth/{person}/advance {"days": n} | {"transactions": n}: time passes."""
    try:
        body = msgspec.json.decode(await request.read() or b"{}", type=Advance)
    except msgspec.DecodeError as exc:
        return _error(str(exc))
    if (body.days is None) == (body.transactions is None):
        return _error("give one of days or transactions")
    if body.days is not None and not 0 < body.days <= MAX_ADVANCE_DAYS:
        return _error(f"days must be in (0, {MAX_ADVANCE_DAYS}]")
    if body.transactions is not None and not 0 < body.transactions <= MAX_ADVANCE_TRANSACTIONS:
        return _error(f"transactions must be in [1, {MAX_ADVANCE_TRANSACTIONS}]")
    bank = _bank(request, body.institution or request.query.get("institution"))
    if isinstance(bank, web.Response):
        return bank
    happened = bank.advance(days=body.days, events=body.transactions)
    return web.json_response(
        {
            "person": bank.person,
            "now": iso_time(bank.now),
            "events": [event_body(bank, e) for e in happened],
        }
    )


# A person key may hold slashes (syncyard's user_ref is "<space>/<account>").
TRUTH_ROUTES = [
    web.get("/_admin/truth/{person:.+}", show_truth),
    web.post("/_admin/truth/{person:.+}/advance", advance_truth),
]
