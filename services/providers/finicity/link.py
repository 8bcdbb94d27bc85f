"""Linking at Finicity: a customer per person, then a Data Connect URL (or a Fix URL).

Finicity has no link token: `POST /connect/v2/generate` returns a signed URL
the person opens. Its `ttl` query parameter (epoch milliseconds) is when it
expires. The customer username is a hash of our `user_ref`, so it is stable
(a second link for the same person finds the same customer) and carries no PII.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from services.providers.base import LinkRequest, LinkToken, ProviderCallError
from services.providers.finicity.client import FinicityClient
from services.providers.finicity.errors import coded_error
from services.providers.finicity.wire import ConnectResponse, CustomerResponse, CustomersResponse

CUSTOMERS_PATH = "/aggregation/v1/customers"
GENERATE_PATH = "/connect/v2/generate"
GENERATE_LITE_PATH = "/connect/v2/generate/lite"
FIX_PATH = "/connect/v2/generate/fix"


def customer_username(user_ref: str) -> str:
    return "syncyard-" + hashlib.sha256(user_ref.encode()).hexdigest()[:40]


async def ensure_customer(
    client: FinicityClient, user_ref: str, *, kind: str, timeout_s: float
) -> str:
    """The customer id for `user_ref`, adding the customer on first use.

    `kind` is `active` (billable, production) or `testing` (Finicity's test
    institutions only).
    """
    username = customer_username(user_ref)
    add_path = f"/aggregation/v2/customers/{kind}"
    try:
        created = await client.post_json(
            add_path,
            {"username": username, "firstName": "syncyard", "lastName": "customer"},
            CustomerResponse,
            endpoint=add_path,
            timeout_s=timeout_s,
        )
    except ProviderCallError as exc:
        # 409: the username is taken, by this person's earlier link.
        if exc.http_status != 409:
            raise
    else:
        return str(created.id)
    customer_id = await find_customer(client, user_ref, timeout_s=timeout_s)
    if customer_id is None:
        message = f"{CUSTOMERS_PATH}: customer is taken but cannot be found"
        raise coded_error("14001", message, provider=client.provider, http_status=404)
    return customer_id


async def find_customer(client: FinicityClient, user_ref: str, *, timeout_s: float) -> str | None:
    """The id of the customer added for `user_ref` (by its username), if there is one."""
    found = await client.get_json(
        CUSTOMERS_PATH,
        CustomersResponse,
        endpoint=CUSTOMERS_PATH,
        timeout_s=timeout_s,
        params={"username": customer_username(user_ref), "start": "1", "limit": "1"},
    )
    return str(found.customers[0].id) if found.customers else None


async def connect_url(
    client: FinicityClient,
    request: LinkRequest,
    *,
    customer_id: str,
    institution_login_id: str | None,
    timeout_s: float,
) -> LinkToken:
    """A Data Connect URL; Fix mode when `institution_login_id` names a login to repair."""
    body: dict[str, Any] = {"partnerId": client.partner_id, "customerId": customer_id}
    if request.language and request.language != "en":
        body["language"] = request.language
    if request.redirect_uri:
        body["redirectUri"] = request.redirect_uri
    if request.webhook_url:
        body["webhook"] = request.webhook_url
        body["webhookContentType"] = "application/json"
    if institution_login_id is not None:
        path = FIX_PATH
        body["institutionLoginId"] = institution_login_id
    elif request.institution_id:
        # Data Connect Lite is the variant that opens straight on one institution.
        path = GENERATE_LITE_PATH
        body["institutionId"] = request.institution_id
    else:
        path = GENERATE_PATH
    parsed = await client.post_json(
        path, body, ConnectResponse, endpoint=path, timeout_s=timeout_s, secrets=(customer_id,)
    )
    return LinkToken(token=parsed.link, url=parsed.link, expires_at=_expiry(parsed.link))


def _expiry(link: str) -> str | None:
    ttl = parse_qs(urlsplit(link).query).get("ttl", [""])[0]
    if not ttl.isdigit():
        return None
    return datetime.fromtimestamp(int(ttl) / 1000.0, UTC).isoformat()
