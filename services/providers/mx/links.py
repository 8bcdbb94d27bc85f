"""MX's wire shapes for linking: users, Connect widget URLs, members, institutions.

MX has no public token. A finished Connect widget reports the new member in
its `mx/connect/memberConnected` postMessage and in the MEMBER webhook, each
carrying `user_guid` and `member_guid`; syncyard's "public token" for MX is
that pair written `USR-...:MBR-...`, and exchanging it checks the member
exists and yields LinkCredentials(item_id=member_guid, access_token=user_guid).
The pair says nothing about who sent it: the link flow also checks the user
is the person's (`MxAdapter.belongs_to`).
"""

from __future__ import annotations

import msgspec

from services.providers.base import Institution

CONNECT_WIDGET = "connect_widget"
PUBLIC_TOKEN_SEPARATOR = ":"  # noqa: S105 - a separator, not a secret


class MxUser(msgspec.Struct, frozen=True):
    guid: str
    id: str | None = None


class UserResponse(msgspec.Struct, frozen=True):
    user: MxUser


class _Pagination(msgspec.Struct, frozen=True):
    current_page: int = 1
    total_pages: int = 1


class UsersResponse(msgspec.Struct, frozen=True):
    users: list[MxUser]
    pagination: _Pagination = _Pagination()


class _WidgetUrl(msgspec.Struct, frozen=True):
    url: str
    type: str | None = None
    user_id: str | None = None


class WidgetUrlResponse(msgspec.Struct, frozen=True):
    widget_url: _WidgetUrl


class _Member(msgspec.Struct, frozen=True):
    guid: str
    user_guid: str | None = None
    institution_code: str | None = None
    connection_status: str | None = None


class MemberResponse(msgspec.Struct, frozen=True):
    member: _Member


class MxInstitution(msgspec.Struct, frozen=True):
    code: str
    name: str
    url: str | None = None
    supports_account_identification: bool | None = None
    supports_account_statement: bool | None = None
    supports_account_verification: bool | None = None
    supports_transaction_history: bool | None = None


class InstitutionResponse(msgspec.Struct, frozen=True):
    institution: MxInstitution


class InstitutionsResponse(msgspec.Struct, frozen=True):
    institutions: list[MxInstitution]
    pagination: _Pagination = _Pagination()


# MX's capability flags in the product names the rest of syncyard uses (Plaid's).
_PRODUCTS = (
    ("supports_account_verification", "auth"),
    ("supports_account_identification", "identity"),
    ("supports_account_statement", "statements"),
    ("supports_transaction_history", "transactions_history"),
)


def institution(i: MxInstitution) -> Institution:
    # Every MX institution aggregates accounts and transactions; the flags add the rest.
    flagged = tuple(product for flag, product in _PRODUCTS if getattr(i, flag))
    products = ("accounts", "transactions", *flagged)
    return Institution(institution_id=i.code, name=i.name, products=products, url=i.url)


def public_token(user_guid: str, member_guid: str) -> str:
    return f"{user_guid}{PUBLIC_TOKEN_SEPARATOR}{member_guid}"


def parse_public_token(token: str) -> tuple[str, str] | None:
    """(user_guid, member_guid), or None if `token` is not our MX public token."""
    user_guid, sep, member_guid = token.partition(PUBLIC_TOKEN_SEPARATOR)
    if not sep or not user_guid or not member_guid or PUBLIC_TOKEN_SEPARATOR in member_guid:
        return None
    return user_guid, member_guid
