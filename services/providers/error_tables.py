"""Every provider's error table, listed once: the classification code and docs/providers.md
read the same rows.

Each provider's `*_errors` module owns its data (a mapping of code to
`ErrorRule`); this module names those mappings in one explicit tuple. A new
provider adds its `ErrorTable`s to `ERROR_TABLES` here; nothing registers by
being imported.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from events.errors import ErrorType
from services.providers.http import ErrorRule
from services.providers.mx_errors import MX_CONNECTION_STATUSES, MX_HTTP_STATUSES
from services.providers.plaid_errors import PLAID_ERROR_CODES, PLAID_ERROR_TYPES

# Classes of trouble at the provider (or between us and it): a link at another
# provider does not share it, so failing over can help. The others are ours
# (validation, our credentials) or the person's login at this provider.
FAILOVER_TYPES: frozenset[ErrorType] = frozenset(
    {"provider_down", "maintenance", "rate_limit", "network"}
)


class ErrorTable(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's codes of one kind (error code, HTTP status, ...) and their rules."""

    provider: str
    key: str
    note: str = ""
    rules: Mapping[str, ErrorRule]


class ErrorRow(msgspec.Struct, frozen=True, kw_only=True):
    provider: str
    key: str
    code: str
    type: ErrorType
    retryable: bool
    failover_helps: bool
    reauth_required: bool


def failover_helps(rule: ErrorRule) -> bool:
    return rule.type in FAILOVER_TYPES


ERROR_TABLES: tuple[ErrorTable, ...] = (
    ErrorTable(provider="plaid", key="error_code", rules=PLAID_ERROR_CODES),
    ErrorTable(
        provider="plaid",
        key="error_type",
        note="fallback for an error_code missing from the table above",
        rules=PLAID_ERROR_TYPES,
    ),
    ErrorTable(
        provider="mx",
        key="HTTP status",
        note="MX error bodies carry no code; the code we report is the status's name",
        rules={f"{status} {code}": rule for status, (code, rule) in MX_HTTP_STATUSES.items()},
    ),
    ErrorTable(
        provider="mx",
        key="member connection_status",
        note="read from the member's status before reads; an HTTP 200, not an error reply",
        rules=MX_CONNECTION_STATUSES,
    ),
)


def rows(tables: tuple[ErrorTable, ...] = ERROR_TABLES) -> list[ErrorRow]:
    """Every row of every table, in table order and then by code."""
    return [
        ErrorRow(
            provider=table.provider,
            key=table.key,
            code=code,
            type=rule.type,
            retryable=rule.retryable,
            failover_helps=failover_helps(rule),
            reauth_required=rule.reauth_required,
        )
        for table in tables
        for code, rule in sorted(table.rules.items())
    ]
