"""The fake Finicity's partner authentication, customers and Data Connect URLs."""

from __future__ import annotations

import hashlib

from aiohttp import web

from sandbox.finicity_api_common import STATE, authorised, error_response, read_json
from sandbox.finicity_api_data import login_ids
from sandbox.middleware import SEED
from sandbox.views import numeric


async def authenticate(request: web.Request) -> web.Response:
    if not request.headers.get("Finicity-App-Key"):
        return error_response("10026", "Missing parameter (Finicity-App-Key)")
    body = await read_json(request)
    if isinstance(body, web.Response):
        return body
    if not body.get("partnerId") or not body.get("partnerSecret"):
        return error_response("10005", "Missing parameter (partnerId)")
    state = request.config_dict[STATE]
    raw = f"{request.config_dict[SEED]}:token:{next(state.counter)}".encode()
    token = hashlib.sha256(raw).hexdigest()[:20]
    state.tokens.add(token)
    return web.json_response({"token": token})


async def add_customer(request: web.Request) -> web.Response:
    refused = authorised(request)
    body = refused or await read_json(request)
    if isinstance(body, web.Response):
        return body
    username = str(body.get("username") or "")
    if not 6 <= len(username) <= 255:
        return error_response("10005", "Missing parameter (username)")
    customers = request.config_dict[STATE].customers
    if username in customers:
        return error_response("11000", "Username is already taken", 409)
    customers[username] = numeric(f"customer:{username}")
    return web.json_response({"id": customers[username], "username": username}, status=201)


async def find_customers(request: web.Request) -> web.Response:
    refused = authorised(request)
    if refused is not None:
        return refused
    found = request.config_dict[STATE].customers.get(request.query.get("username", ""))
    rows = [{"id": found, "username": request.query["username"]}] if found else []
    return web.json_response(
        {"found": len(rows), "displaying": len(rows), "moreAvailable": False, "customers": rows}
    )


async def generate(request: web.Request) -> web.Response:
    refused = authorised(request)
    body = refused or await read_json(request)
    if isinstance(body, web.Response):
        return body
    kind = request.path.rsplit("/", 1)[-1]
    required = {"fix": "institutionLoginId", "lite": "institutionId"}.get(kind)
    for name in ("partnerId", "customerId", *([required] if required else [])):
        if not body.get(name):
            return error_response("10005", f"Missing parameter ({name})")
    customer_id = str(body["customerId"])
    if kind == "fix" and str(body["institutionLoginId"]) not in login_ids(customer_id):
        return error_response("38007", "Customer has no accounts for institutionLoginId.")
    now_ms = 1_738_300_000_000
    signature = numeric(f"{customer_id}:{kind}", 18)
    link = (
        f"https://connect2.finicity.com?customerId={customer_id}&origin=url"
        f"&partnerId={body['partnerId']}&signature={signature}&timestamp={now_ms}"
        f"&ttl={now_ms + 7_200_000}&type={kind}"
    )
    return web.json_response({"link": link})
