"""The provider port: what the orchestrator needs from every provider adapter."""

from __future__ import annotations

import abc
from typing import Any

import msgspec

from events.errors import ErrorInfo


class LinkCredentials(msgspec.Struct, frozen=True, kw_only=True):
    """A connection's link at one provider: what a call needs to reach the item."""

    provider: str
    item_id: str
    access_token: str

    def __repr__(self) -> str:
        return (
            f"LinkCredentials(provider={self.provider!r}, item_id={self.item_id!r}, "
            "access_token='***')"
        )

    __str__ = __repr__


class AccountsPage(msgspec.Struct, frozen=True, kw_only=True):
    """Accounts normalised to one shape whichever provider answered.

    Each account: account_id, name, type, subtype, mask, balances
    {current, available, iso_currency_code}.
    """

    accounts: list[dict[str, Any]]


class TransactionsPage(msgspec.Struct, frozen=True, kw_only=True):
    """One incremental page: what changed since `cursor`, and where to go on from.

    Each transaction: transaction_id, account_id, amount, date (ISO), name,
    pending, iso_currency_code.
    """

    added: list[dict[str, Any]]
    modified: list[dict[str, Any]]
    removed: list[str]
    next_cursor: str
    has_more: bool


class ProviderCallError(Exception):
    """A provider call that failed, already classified into our taxonomy.

    The message is safe to log: adapters never put tokens or secrets in it.
    """

    def __init__(
        self,
        error: ErrorInfo,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        reauth_required: bool = False,
    ) -> None:
        super().__init__(f"{error.provider}: {error.type}/{error.code}: {error.message}")
        self.error = error
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.reauth_required = reauth_required


class ProviderAdapter(abc.ABC):
    """One provider's real HTTP API behind syncyard's operations."""

    name: str

    @abc.abstractmethod
    async def get_accounts(self, link: LinkCredentials, *, timeout_s: float) -> AccountsPage:
        """Fetch accounts and balances; raise ProviderCallError on any failure."""

    @abc.abstractmethod
    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        """Fetch one page of changes since `cursor`; raise ProviderCallError on any failure."""

    async def aclose(self) -> None:  # noqa: B027 - adapters without resources need not override
        """Release connections; the shared HTTP session is closed by its owner."""
