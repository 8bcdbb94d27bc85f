"""Belvo reads: a link's status, its accounts, and its transactions page by page.

A sync run starts with `POST /api/transactions/` over the window since the
last run (less a lookback, as banks restate recent days), so Belvo fetches
fresh data from the bank and any trouble with the person's login surfaces
as Belvo's own error. The run then pages `GET /api/transactions/` for what
Belvo stored after the last run's watermark, following `next`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from services.providers.base import TransactionsPage
from services.providers.belvo.client import BelvoClient, query_value
from services.providers.belvo.errors import link_status_error
from services.providers.belvo.wire import (
    MAX_PAGE_SIZE,
    AccountsList,
    Cursor,
    Link,
    TransactionsList,
    encode_cursor,
    later,
    normalise_account,
    normalise_transaction,
)

LINK_PATH = "/api/links/{id}/"
ACCOUNTS_PATH = "/api/accounts/"
TRANSACTIONS_PATH = "/api/transactions/"
HISTORY_DAYS = 365
LOOKBACK_DAYS = 7
# A link has a handful of accounts; this many pages means a paging loop.
MAX_ACCOUNT_PAGES = 20


async def checked_link(client: BelvoClient, link_id: str, *, timeout_s: float) -> Link:
    """The link, raising the documented error its status stands for."""
    link = await client.get_json(
        f"/api/links/{quote(link_id, safe='')}/",
        Link,
        endpoint=LINK_PATH,
        timeout_s=timeout_s,
        secrets=(link_id,),
    )
    error = link_status_error(link.status, provider=client.provider, endpoint=LINK_PATH)
    if error is not None:
        raise error
    return link


async def link_accounts(
    client: BelvoClient, link_id: str, *, timeout_s: float
) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = []
    query: str | None = urlencode({"link": link_id, "page_size": str(MAX_PAGE_SIZE)})
    for _ in range(MAX_ACCOUNT_PAGES):
        if query is None:
            return accounts
        page = await client.get_json(
            ACCOUNTS_PATH,
            AccountsList,
            endpoint=ACCOUNTS_PATH,
            timeout_s=timeout_s,
            params=query,
            secrets=(link_id,),
        )
        accounts.extend(normalise_account(a) for a in page.results)
        query = client.next_query(page.next, path=ACCOUNTS_PATH)
    raise client.invalid(f"{ACCOUNTS_PATH}: more than {MAX_ACCOUNT_PAGES} pages of accounts")


async def transactions_page(
    client: BelvoClient,
    link_id: str,
    cursor: Cursor,
    *,
    count: int,
    today: date,
    refresh: bool,
    timeout_s: float,
) -> TransactionsPage:
    query = cursor.query
    if cursor.starts_run:
        if refresh:
            await _refresh(client, link_id, cursor.watermark, today=today, timeout_s=timeout_s)
        else:
            await checked_link(client, link_id, timeout_s=timeout_s)
        fields = {"link": link_id, "page_size": str(max(1, min(count, MAX_PAGE_SIZE)))}
        if cursor.watermark:
            fields["created_at__gt"] = cursor.watermark
        query = urlencode(fields)
    elif query_value(query, "link") != link_id:
        raise client.invalid("cursor belongs to another Belvo link")
    page = await client.get_json(
        TRANSACTIONS_PATH,
        TransactionsList,
        endpoint=TRANSACTIONS_PATH,
        timeout_s=timeout_s,
        params=query,
        secrets=(link_id,),
    )
    watermark = cursor.watermark
    for t in page.results:
        watermark = later(watermark, t.created_at)
    next_query = client.next_query(page.next, path=TRANSACTIONS_PATH)
    return TransactionsPage(
        added=[normalise_transaction(t) for t in page.results],
        modified=[],
        removed=[],
        next_cursor=encode_cursor(Cursor(next_query or "", watermark)),
        has_more=next_query is not None,
    )


async def _refresh(
    client: BelvoClient, link_id: str, watermark: str, *, today: date, timeout_s: float
) -> None:
    earliest = today - timedelta(days=HISTORY_DAYS)
    since = earliest
    if watermark:
        try:
            since = datetime.fromisoformat(watermark).date() - timedelta(days=LOOKBACK_DAYS)
        except ValueError:
            since = earliest
    body = {
        "link": link_id,
        "date_from": max(since, earliest).isoformat(),
        "date_to": today.isoformat(),
        "save_data": True,
    }
    # The answer lists the fetched transactions; the paged list serves them.
    await client.call(
        "POST",
        TRANSACTIONS_PATH,
        endpoint=TRANSACTIONS_PATH,
        timeout_s=timeout_s,
        json_body=body,
        secrets=(link_id,),
    )
