"""Plaid's institution status (`/institutions/get_by_id` with `options.include_status`),
derived from the faults armed now, so scenarios and the admin API drive it.

For `item_logins` (the bank login behind `/item/public_token/exchange` and
`/accounts/get`) and `transactions_updates` (`/transactions/sync`), the faults
that apply to the institution are summed by whose errors they make: the
bank's (`INSTITUTION_*` codes) are `error_institution`, Plaid's own (its API
errors, rate limits, 5xx, garbled bodies, hung connections) `error_plaid`;
a person's or a caller's errors (`ITEM_*`, `INVALID_*`) are neither, as at
Plaid. `status` follows `success`: HEALTHY above 0.5 (most calls work),
DOWN at 0.05 or less (all but none fail), DEGRADED between. Each fault that
makes errors is a health incident, started when it started applying.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox.fault_spec import Fault, RequestContext
from sandbox.faults import FaultBook
from sandbox.institutions import FakeInstitution

_INSTITUTION_CODES = frozenset(
    {
        "INSTITUTION_DOWN",
        "INSTITUTION_NOT_RESPONDING",
        "INSTITUTION_NOT_AVAILABLE",
        "INSTITUTION_NO_LONGER_SUPPORTED",
        "INSTITUTION_RATE_LIMIT",
    }
)
_NOT_COUNTED_PREFIXES = ("ITEM_", "INVALID_", "MISSING_", "UNKNOWN_", "PRODUCT_")
_PRODUCT_ENDPOINTS = {
    "item_logins": ("/item/public_token/exchange", "/accounts/get"),
    "transactions_updates": ("/transactions/sync",),
}
DOWN_AT = 0.05
HEALTHY_ABOVE = 0.5


def _whose(fault: Fault) -> str | None:
    """`institution`, `plaid`, or None for faults that make no error Plaid would count."""
    if fault.only_slows:
        return None
    code = fault.error_code or ""
    if code in _INSTITUTION_CODES:
        return "institution"
    if code.startswith(_NOT_COUNTED_PREFIXES) or "TRANSACTIONS_SYNC" in code:
        return None
    return "plaid"


def _touches(fault: Fault, product: str) -> bool:
    if fault.endpoint is None:
        return True
    return any(e.endswith(fault.endpoint) for e in _PRODUCT_ENDPOINTS[product])


def _title(institution: FakeInstitution, fault: Fault) -> str:
    what = fault.error_code or (f"HTTP {fault.status}" if fault.status else "errors")
    where = fault.endpoint or "logins and updates"
    return f"{institution.name}: {what} on {round(fault.rate * 100)}% of {where}"


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def institution_status(book: FaultBook, institution: FakeInstitution) -> dict[str, Any]:
    """The `status` object of Plaid's Institution, for the faults armed now."""
    context = RequestContext(
        institution_id=institution.plaid_id,
        institution_name=institution.name,
        region=institution.country,
    )
    wall = datetime.now(UTC)
    faults = [
        (fault, wall - timedelta(seconds=age), whose)
        for fault, age in book.active("plaid", context)
        if (whose := _whose(fault)) is not None
    ]
    status: dict[str, Any] = {}
    for product in _PRODUCT_ENDPOINTS:
        mine = [(f, since, whose) for f, since, whose in faults if _touches(f, product)]
        bank = min(1.0, sum((f.rate for f, _, whose in mine if whose == "institution"), 0.0))
        plaid = min(1.0 - bank, sum((f.rate for f, _, whose in mine if whose == "plaid"), 0.0))
        success = round(1.0 - bank - plaid, 4)
        word = (
            "DOWN" if success <= DOWN_AT else "HEALTHY" if success > HEALTHY_ABOVE else "DEGRADED"
        )
        changed = max((since for _, since, _ in mine), default=_STARTED)
        breakdown: dict[str, Any] = {
            "success": success,
            "error_plaid": round(plaid, 4),
            "error_institution": round(bank, 4),
        }
        if product == "transactions_updates":
            breakdown["refresh_interval"] = {"HEALTHY": "NORMAL", "DEGRADED": "DELAYED"}.get(
                word, "STOPPED"
            )
        status[product] = {
            "status": word,
            "last_status_change": _iso(changed),
            "breakdown": breakdown,
        }
    status["health_incidents"] = [
        {
            "start_date": _iso(since),
            "end_date": None,
            "title": _title(institution, fault),
            "incident_updates": [
                {
                    "description": "Errors reported; investigating",
                    "status": "INVESTIGATING",
                    "updated_date": _iso(since),
                }
            ],
        }
        for fault, since, _ in faults
    ]
    return status


# When this sandbox started: a product never affected has been as it is since then.
_STARTED = datetime.now(UTC)
