"""Finicity reads: a link's accounts (checked for broken aggregation) and paged transactions."""

from __future__ import annotations

from urllib.parse import quote

from services.providers.base import LinkCredentials, TransactionsPage
from services.providers.finicity.client import FinicityClient
from services.providers.finicity.errors import aggregation_status_error, coded_error
from services.providers.finicity.wire import (
    LOOKBACK_S,
    MAX_LIMIT,
    AccountsResponse,
    Cursor,
    FinicityAccount,
    TransactionsResponse,
    encode_cursor,
    more_available,
    normalise_transaction,
)

ACCOUNTS = "/aggregation/v1/customers/{customerId}/accounts"
TRANSACTIONS = "/aggregation/v3/customers/{customerId}/transactions"


def split_link(link: LinkCredentials) -> tuple[str, str]:
    """(customerId, institutionLoginId) from `item_id`."""
    customer_id, _, login_id = link.item_id.partition(":")
    return customer_id or link.access_token, login_id


async def customer_accounts(
    client: FinicityClient, customer_id: str, *, timeout_s: float
) -> list[FinicityAccount]:
    parsed = await client.get_json(
        f"/aggregation/v1/customers/{quote(customer_id, safe='')}/accounts",
        AccountsResponse,
        endpoint=ACCOUNTS,
        timeout_s=timeout_s,
        secrets=(customer_id,),
    )
    return parsed.accounts


def of_login(
    accounts: list[FinicityAccount], link: LinkCredentials, provider: str
) -> list[FinicityAccount]:
    """The link's accounts; raises when there are none or their aggregation is broken.

    Like MX's member status, a broken bank login is not an HTTP error:
    Finicity keeps serving stale data and flags each account's
    `aggregationStatusCode`.
    """
    _, login_id = split_link(link)
    mine = [a for a in accounts if str(a.institution_login_id) == login_id]
    if not mine:
        message = f"{ACCOUNTS}: no accounts for the link's institution login"
        raise coded_error("38007", message, provider=provider, http_status=404)
    for account in mine:
        error = aggregation_status_error(
            account.aggregation_status_code or 0, provider=provider, endpoint=ACCOUNTS
        )
        if error is not None:
            raise error
    return mine


async def link_accounts(
    client: FinicityClient, link: LinkCredentials, *, timeout_s: float
) -> list[FinicityAccount]:
    customer_id, _ = split_link(link)
    accounts = await customer_accounts(client, customer_id, timeout_s=timeout_s)
    return of_login(accounts, link, client.provider)


async def transactions_page(
    client: FinicityClient,
    link: LinkCredentials,
    position: Cursor,
    *,
    count: int,
    now: int,
    timeout_s: float,
) -> TransactionsPage:
    """One page of a run; a run starts by fixing its window and its accounts."""
    if position.starts_run:
        # A broken login shows in its accounts' status; once per run is enough.
        accounts = await link_accounts(client, link, timeout_s=timeout_s)
        ids = tuple((str(a.id), a.currency or "") for a in accounts)
        position = Cursor(min(position.from_date, now), now, 1, ids)
    limit = max(1, min(count, MAX_LIMIT))
    customer_id, _ = split_link(link)
    parsed = await client.get_json(
        f"/aggregation/v3/customers/{quote(customer_id, safe='')}/transactions",
        TransactionsResponse,
        endpoint=TRANSACTIONS,
        timeout_s=timeout_s,
        params={
            "fromDate": str(position.from_date),
            "toDate": str(position.to_date),
            "start": str(position.start),
            "limit": str(limit),
            "sort": "asc",
            "includePending": "true",
        },
        secrets=(customer_id,),
    )
    currencies = dict(position.accounts)
    # The endpoint lists every login of the customer; this link is one of them.
    added = [
        normalise_transaction(t, currencies[str(t.account_id)] or None)
        for t in parsed.transactions
        if str(t.account_id) in currencies
    ]
    has_more = more_available(parsed.more_available)
    if has_more:
        after = Cursor(
            position.from_date, position.to_date, position.start + limit, position.accounts
        )
    else:
        # The next run re-reads the lookback, where banks restate transactions.
        start_from = max(position.to_date - LOOKBACK_S, position.from_date)
        after = Cursor(start_from, position.to_date, 0)
    return TransactionsPage(
        added=added, modified=[], removed=[], next_cursor=encode_cursor(after), has_more=has_more
    )
