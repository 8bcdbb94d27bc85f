"""Plaid's wire shapes (only the fields we read) and their normalisation to syncyard's."""

from __future__ import annotations

from typing import Any

import msgspec

from services.providers.base import Institution


class _Balances(msgspec.Struct, frozen=True):
    current: float | None = None
    available: float | None = None
    iso_currency_code: str | None = None


class _Account(msgspec.Struct, frozen=True):
    account_id: str
    name: str
    type: str
    balances: _Balances
    subtype: str | None = None
    mask: str | None = None


class AccountsResponse(msgspec.Struct, frozen=True):
    accounts: list[_Account]


class _Transaction(msgspec.Struct, frozen=True):
    transaction_id: str
    account_id: str
    amount: float
    date: str
    authorized_date: str | None = None
    name: str | None = None
    merchant_name: str | None = None
    pending: bool = False
    pending_transaction_id: str | None = None
    iso_currency_code: str | None = None
    unofficial_currency_code: str | None = None


class _RemovedTransaction(msgspec.Struct, frozen=True):
    transaction_id: str


# Plaid's transaction pulls for a new Item have not landed: nothing yet, come back.
NOT_READY = "NOT_READY"


class SyncResponse(msgspec.Struct, frozen=True):
    added: list[_Transaction]
    modified: list[_Transaction]
    removed: list[_RemovedTransaction]
    next_cursor: str
    has_more: bool
    # NOT_READY, INITIAL_UPDATE_COMPLETE (the last 30 days; older ones follow as
    # added later), HISTORICAL_UPDATE_COMPLETE, TRANSACTIONS_UPDATE_STATUS_UNKNOWN.
    transactions_update_status: str | None = None


class LinkTokenResponse(msgspec.Struct, frozen=True):
    link_token: str
    expiration: str | None = None
    request_id: str | None = None


class ExchangeResponse(msgspec.Struct, frozen=True):
    access_token: str
    item_id: str


class RemoveResponse(msgspec.Struct, frozen=True):
    request_id: str | None = None


class PlaidInstitution(msgspec.Struct, frozen=True):
    institution_id: str
    name: str
    country_codes: list[str] = []
    products: list[str] = []
    url: str | None = None


class InstitutionResponse(msgspec.Struct, frozen=True):
    institution: PlaidInstitution


class InstitutionsResponse(msgspec.Struct, frozen=True):
    institutions: list[PlaidInstitution]


class Jwk(msgspec.Struct, frozen=True):
    """One of Plaid's webhook verification keys (an EC P-256 public JWK)."""

    kid: str
    kty: str
    crv: str
    x: str
    y: str
    alg: str = "ES256"
    use: str | None = None
    created_at: int | None = None
    expired_at: int | None = None


class VerificationKeyResponse(msgspec.Struct, frozen=True):
    key: Jwk


def account(a: _Account) -> dict[str, Any]:
    return {
        "account_id": a.account_id,
        "name": a.name,
        "type": a.type,
        "subtype": a.subtype,
        "mask": a.mask,
        "balances": msgspec.structs.asdict(a.balances),
    }


def transaction(t: _Transaction) -> dict[str, Any]:
    """Plaid's own shape is the normalised one; a posting keeps its pending id's link.

    Plaid's `date` is the posted date (the authorised date while pending).
    """
    return {
        "transaction_id": t.transaction_id,
        "account_id": t.account_id,
        "amount": t.amount,
        "iso_currency_code": t.iso_currency_code or t.unofficial_currency_code,
        "date": t.date,
        "authorized_date": t.authorized_date,
        "name": t.name or t.merchant_name or "",
        "merchant_name": t.merchant_name,
        "pending": t.pending,
        "pending_transaction_id": t.pending_transaction_id,
    }


def institution(i: PlaidInstitution) -> Institution:
    return Institution(
        institution_id=i.institution_id,
        name=i.name,
        country_codes=tuple(i.country_codes),
        products=tuple(i.products),
        url=i.url,
    )
