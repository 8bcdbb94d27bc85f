"""Manual entry: accounts and transactions a person types in, behind the provider port.

Nothing here calls out. A link is a ledger in the injected `ManualEntrySource`:
`create_link` opens one and hands back its id as the token,
`exchange_token` checks it exists, and `LinkCredentials.item_id` and
`access_token` are both that id (there is no third party to authenticate
to). The only failures are ours: an unknown ledger, a bad cursor, a slow
store, and none of them fails over (`failover_helps=False`): no provider
holds this data but the person.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from services.providers.base import (
    AccountsPage,
    HealthStatus,
    Institution,
    LinkCredentials,
    LinkRequest,
    LinkToken,
    ProviderAdapter,
    TransactionsPage,
    WebhookEvent,
    WebhookRejectedError,
)
from services.providers.http import ErrorRule
from services.providers.manual.store import ManualEntry, ManualEntrySource, UnknownLedgerError

T = TypeVar("T")
MAX_PAGE = 500
INSTITUTION = Institution(
    institution_id="manual", name="Manual entry", products=("balances", "transactions")
)


# The person's own entries exist at no other provider: failing over never helps.
_INVALID = ErrorRule("validation", False, failover_helps=False)
# The entries live in our own database: a slow store is our trouble, not a provider's.
_STORE_TIMEOUT = ErrorRule("network", True, failover_helps=False, blame="syncyard")


def _transaction(entry: ManualEntry) -> dict[str, Any]:
    return {
        "transaction_id": entry.entry_id,
        "account_id": entry.account_id,
        "amount": entry.amount,
        "iso_currency_code": entry.iso_currency_code,
        "date": entry.date,
        "authorized_date": None,
        "name": entry.name,
        "merchant_name": None,
        "pending": entry.pending,
        "pending_transaction_id": None,
    }


class ManualAdapter(ProviderAdapter):
    """Reads a person's own entries from `source`; `new_id` mints ledger ids (injectable)."""

    def __init__(
        self,
        source: ManualEntrySource,
        *,
        name: str = "manual",
        new_id: Callable[[], str] = lambda: f"manual-{uuid.uuid4().hex}",
    ) -> None:
        self.name = name
        self._source = source
        self._new_id = new_id

    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        accounts = await self._call(self._source.accounts(link.item_id), timeout_s)
        return AccountsPage(
            accounts=[
                {
                    "account_id": a.account_id,
                    "name": a.name,
                    "type": a.type,
                    "subtype": a.subtype,
                    "mask": None,
                    "balances": {
                        "current": a.current,
                        "available": a.available,
                        "iso_currency_code": a.iso_currency_code,
                    },
                }
                for a in accounts
            ]
        )

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        if cursor and not cursor.isdigit():
            raise _INVALID.error(self.name, "INVALID_CURSOR", "cursor is not a log position")
        after = int(cursor) if cursor else 0
        limit = max(1, min(count, MAX_PAGE))
        changes, head = await self._call(
            self._source.changes(link.item_id, after, limit), timeout_s
        )
        if after > head:
            raise _INVALID.error(self.name, "INVALID_CURSOR", "cursor is past the log's end")
        end = changes[-1].position if changes else after
        return TransactionsPage(
            added=[_transaction(c.entry) for c in changes if c.kind == "added"],
            modified=[_transaction(c.entry) for c in changes if c.kind == "modified"],
            removed=[c.entry.entry_id for c in changes if c.kind == "removed"],
            next_cursor=str(end),
            has_more=end < head,
        )

    async def health_check(self, *, timeout_s: float) -> HealthStatus:
        started = time.perf_counter()
        # A cheap read proves a store-backed source is reachable; in memory it always is.
        await self._call(self._source.exists(INSTITUTION.institution_id), timeout_s)
        return HealthStatus(
            healthy=True, latency_ms=(time.perf_counter() - started) * 1000, detail="local"
        )

    async def create_link(self, request: LinkRequest, *, timeout_s: float) -> LinkToken:
        """Open a ledger (or, in update mode, reuse the link's own); its id is the token."""
        ledger_id = request.update_link.item_id if request.update_link else self._new_id()
        await self._call(self._source.open(ledger_id, request.user_ref), timeout_s)
        return LinkToken(token=ledger_id)

    async def exchange_token(self, public_token: str, *, timeout_s: float) -> LinkCredentials:
        if not await self._call(self._source.exists(public_token), timeout_s):
            raise _INVALID.error(self.name, "ITEM_NOT_FOUND", "no manual ledger for this token")
        return LinkCredentials(provider=self.name, item_id=public_token, access_token=public_token)

    async def remove_item(self, link: LinkCredentials, *, timeout_s: float) -> None:
        await self._call(self._source.close(link.item_id), timeout_s)

    async def get_institution(self, institution_id: str, *, timeout_s: float) -> Institution:
        if institution_id != INSTITUTION.institution_id:
            raise _INVALID.error(
                self.name, "INSTITUTION_NOT_FOUND", "manual entry is its own institution"
            )
        return INSTITUTION

    async def search_institutions(
        self, query: str, *, country_codes: tuple[str, ...], limit: int, timeout_s: float
    ) -> list[Institution]:
        matches = query.strip().lower() in INSTITUTION.name.lower()
        return [INSTITUTION] if matches and limit > 0 else []

    async def handle_webhook(
        self, headers: Mapping[str, str], body: bytes, *, now: float, timeout_s: float
    ) -> WebhookEvent:
        raise WebhookRejectedError(f"{self.name}: manual entry receives no webhooks")

    async def _call(self, operation: Awaitable[T], timeout_s: float) -> T:
        """Run one store operation under the caller's deadline, failures classified."""
        try:
            async with asyncio.timeout(timeout_s):
                return await operation
        except UnknownLedgerError:
            raise _INVALID.error(
                self.name, "ITEM_NOT_FOUND", "no manual ledger for this link"
            ) from None
        except TimeoutError:
            raise _STORE_TIMEOUT.error(
                self.name, "store_timeout", f"store gave no answer within {timeout_s:g}s"
            ) from None
