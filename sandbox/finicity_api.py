"""A local Finicity: partner authentication, customers, Data Connect URLs, accounts,
paged transactions, institution logins and institutions, with Finicity's error bodies.

Every call but authentication needs `Finicity-App-Key` and a token this
sandbox issued. A fault whose `error_code` is an aggregation status code
(`103`, `185`, `102`...) shows where Finicity shows it: in the accounts'
`aggregationStatusCode` on the accounts call, as an HTTP 500 body elsewhere.
"""

from __future__ import annotations

import itertools

from aiohttp import web

from sandbox.faults import Fault
from sandbox.finicity_api_common import (
    STATE,
    FinicityState,
    authorised,
    error_response,
    query_int,
)
from sandbox.finicity_api_data import (
    account_body,
    institution_body,
    institution_id,
    institutions,
    is_aggregation_code,
    login_bank,
    login_ids,
    transaction_body,
)
from sandbox.finicity_api_links import (
    add_customer,
    authenticate,
    find_customers,
    generate,
)
from sandbox.middleware import SEED, TRUTH, fault_middleware
from sandbox.truth import Bank

_AUTH = "/aggregation/v2/partners/authentication"
# An aggregation status a fault put on this call's accounts.
_AGGREGATION_FAULT = web.RequestKey("finicity_aggregation_fault", str)
_ACCOUNTS = "/aggregation/v1/customers/{customer_id}/accounts"


def _fault_response(request: web.Request, fault: Fault) -> web.Response | None:
    code = fault.error_code
    if code is not None and is_aggregation_code(code) and request.path.endswith("/accounts"):
        # Served by the handler, as the accounts' aggregation status.
        request[_AGGREGATION_FAULT] = code
        return None
    if code is None and fault.status is None:
        return None
    return error_response(code or str(fault.status), f"sandbox fault: {code}", fault.status)


def _aggregation_fault(request: web.Request) -> int:
    return int(request.get(_AGGREGATION_FAULT, "0"))


def _customer(request: web.Request) -> str | web.Response:
    refused = authorised(request)
    if refused is not None:
        return refused
    customer_id = request.match_info["customer_id"]
    if not customer_id.isdigit():
        return error_response("14001", "Customer not found.")
    return customer_id


def _live_logins(request: web.Request, customer_id: str) -> list[tuple[int, str]]:
    """(index, login id) of the customer's logins not deleted."""
    deleted = request.config_dict[STATE].deleted_logins
    return [
        (index, x)
        for index, x in enumerate(login_ids(customer_id))
        if f"{customer_id}:{x}" not in deleted
    ]


def _person(request: web.Request, customer_id: str) -> str:
    """Whose banks a customer reads: the customer's username, or a bare id itself."""
    for username, known in request.config_dict[STATE].customers.items():
        if known == customer_id:
            return username
    return customer_id


def _bank(request: web.Request, customer_id: str, index: int) -> Bank:
    return login_bank(request.config_dict[TRUTH], _person(request, customer_id), index)


async def accounts(request: web.Request) -> web.Response:
    customer_id = _customer(request)
    if isinstance(customer_id, web.Response):
        return customer_id
    status_code = _aggregation_fault(request)
    rows = [
        row
        for index, login in _live_logins(request, customer_id)
        for row in account_body(
            _bank(request, customer_id, index), customer_id, login, index, status_code=status_code
        )
    ]
    return web.json_response({"accounts": rows})


async def transactions(request: web.Request) -> web.Response:
    customer_id = _customer(request)
    if isinstance(customer_id, web.Response):
        return customer_id
    q = request.query
    if not q.get("fromDate", "").isdigit() or not q.get("toDate", "").isdigit():
        return error_response("10005", "Missing parameter (fromDate, toDate)")
    start, limit = query_int(q.get("start"), 1), query_int(q.get("limit"), 25)
    if start < 1 or not 1 <= limit <= 1000:
        return error_response("10100", "start must be >= 1 and limit 1..1000")
    rows = [
        transaction_body(bank, t, customer_id)
        for index, _ in _live_logins(request, customer_id)
        for bank in (_bank(request, customer_id, index),)
        for t in bank.live()
    ]
    # Finicity's window is on the posted date; a pending one counts on its transaction date.
    window = [r for r in rows if int(q["fromDate"]) <= r["postedDate"] <= int(q["toDate"])]
    window.sort(key=lambda r: (r["transactionDate"], r["id"]), reverse=q.get("sort") == "desc")
    page = window[start - 1 : start - 1 + limit]
    return web.json_response(
        {
            "found": len(window),
            "displaying": len(page),
            "moreAvailable": start - 1 + limit < len(window),
            "fromDate": q["fromDate"],
            "toDate": q["toDate"],
            "sort": q.get("sort", "desc"),
            "transactions": page,
        }
    )


async def delete_login(request: web.Request) -> web.Response:
    customer_id = _customer(request)
    if isinstance(customer_id, web.Response):
        return customer_id
    login = request.match_info["login_id"]
    if login not in [x for _, x in _live_logins(request, customer_id)]:
        return error_response("38007", "Customer has no accounts for institutionLoginId.")
    request.config_dict[STATE].deleted_logins.add(f"{customer_id}:{login}")
    return web.Response(status=204)


async def list_institutions(request: web.Request) -> web.Response:
    refused = authorised(request)
    if refused is not None:
        return refused
    words = request.query.get("search", "*").replace("*", "").lower().split()
    found = [
        institution_body(i)
        for i in institutions(request.config_dict[SEED])
        if all(w in i.name.lower() for w in words)
    ]
    start, limit = (
        query_int(request.query.get("start"), 1),
        query_int(request.query.get("limit"), 25),
    )
    page = found[start - 1 : start - 1 + limit]
    more = start - 1 + limit < len(found)
    body = {"found": len(found), "displaying": len(page), "moreAvailable": more}
    return web.json_response({**body, "createdDate": 1_738_300_000, "institutions": page})


async def get_institution(request: web.Request) -> web.Response:
    refused = authorised(request)
    if refused is not None:
        return refused
    for i in institutions(request.config_dict[SEED]):
        if institution_id(i) == request.match_info["institution_id"]:
            return web.json_response({"institution": institution_body(i)})
    return error_response("14001", "Resource not found.")


def create_finicity_app(prefix: str = "/finicity") -> web.Application:
    """Finicity's routes, to be mounted under `prefix` on the sandbox app."""
    app = web.Application(middlewares=[fault_middleware("finicity", prefix, _fault_response)])
    app[STATE] = FinicityState(
        tokens=set(), customers={}, deleted_logins=set(), counter=itertools.count(1)
    )
    app.router.add_post(_AUTH, authenticate)
    app.router.add_post("/aggregation/v2/customers/{kind:active|testing}", add_customer)
    app.router.add_get("/aggregation/v1/customers", find_customers)
    app.router.add_post("/connect/v2/generate", generate)
    app.router.add_post("/connect/v2/generate/{kind:lite|fix}", generate)
    app.router.add_get(_ACCOUNTS, accounts)
    app.router.add_get("/aggregation/v3/customers/{customer_id}/transactions", transactions)
    app.router.add_delete(
        "/aggregation/v1/customers/{customer_id}/institutionLogins/{login_id}", delete_login
    )
    app.router.add_get("/institution/v2/institutions", list_institutions)
    app.router.add_get("/institution/v2/institutions/{institution_id}", get_institution)
    return app
