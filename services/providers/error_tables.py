"""Every provider's error table, listed once: the classification code and docs/providers.md
read the same rows.

Each provider's `errors.py` owns its data (a mapping of code to
`ErrorRule`); this module names those mappings in one explicit tuple. A new
provider adds its `ErrorTable`s to `ERROR_TABLES` here; nothing registers by
being imported.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from events.errors import Blame, ErrorType
from services.providers.base import FAILOVER_TYPES
from services.providers.belvo.errors import BELVO_ERRORS, BELVO_HTTP_STATUSES, LINK_STATUS_CODES
from services.providers.bitso.errors import (
    BITSO_ERROR_CATEGORIES,
    BITSO_ERRORS,
    BITSO_HTTP_STATUSES,
)
from services.providers.blockchain.errors import CHAIN_ERRORS
from services.providers.finicity.errors import FINICITY_ERRORS, FINICITY_HTTP_STATUSES
from services.providers.http import ErrorRule
from services.providers.mx.errors import MX_CONNECTION_STATUSES, MX_HTTP_STATUSES
from services.providers.plaid.errors import PLAID_ERROR_CODES, PLAID_ERROR_TYPES

__all__ = ["ERROR_TABLES", "FAILOVER_TYPES", "ErrorRow", "ErrorTable", "rows"]


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
    blame: Blame


def _by_status(table: Mapping[int, ErrorRule]) -> dict[str, ErrorRule]:
    return {str(status): rule for status, rule in table.items()}


def _named_statuses(table: Mapping[int, tuple[str, ErrorRule]]) -> dict[str, ErrorRule]:
    # These providers report a name for the status as the code: show both,
    # unless the name is only the status again (`http_503`).
    return {
        code if code == f"http_{status}" else f"{status} {code}": rule
        for status, (code, rule) in table.items()
    }


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
        rules=_named_statuses(MX_HTTP_STATUSES),
    ),
    ErrorTable(
        provider="mx",
        key="member connection_status",
        note="read from the member's status before reads; an HTTP 200, not an error reply",
        rules=MX_CONNECTION_STATUSES,
    ),
    ErrorTable(
        provider="finicity",
        key="code",
        note="API codes (5 digits) and aggregation status codes (3-4 digits, also read "
        "from each account's aggregationStatusCode)",
        rules=FINICITY_ERRORS,
    ),
    ErrorTable(
        provider="finicity",
        key="HTTP status",
        note="fallback for a body whose code is missing from the table above",
        rules=_by_status(FINICITY_HTTP_STATUSES),
    ),
    ErrorTable(provider="belvo", key="error code", rules=BELVO_ERRORS),
    ErrorTable(
        provider="belvo",
        key="HTTP status",
        note="fallback for a body whose code Belvo does not document",
        rules=_by_status(BELVO_HTTP_STATUSES),
    ),
    ErrorTable(
        provider="belvo",
        key="link status",
        note="read from the link before reads; the code we report is the documented "
        "error the status stands for",
        rules={
            f"{status} → {code}": BELVO_ERRORS[code] for status, code in LINK_STATUS_CODES.items()
        },
    ),
    ErrorTable(provider="bitso", key="error code", rules=BITSO_ERRORS),
    ErrorTable(
        provider="bitso",
        key="error category",
        note="fallback by a code's first two digits, for a code missing from the table above",
        rules=BITSO_ERROR_CATEGORIES,
    ),
    ErrorTable(
        provider="bitso",
        key="HTTP status",
        note="for a reply whose body is not Bitso's",
        rules=_named_statuses(BITSO_HTTP_STATUSES),
    ),
    ErrorTable(
        provider="blockchain",
        key="HTTP status",
        note="Esplora answers errors as plain text; the code we report is the status's name",
        rules=_named_statuses(CHAIN_ERRORS),
    ),
)


def _order(item: tuple[str, ErrorRule]) -> tuple[int, str]:
    # Numeric codes in numeric order (101 before 1000), then the rest by name.
    code = item[0]
    return (int(code), "") if code.isdigit() else (2**63, code)


def rows(tables: tuple[ErrorTable, ...] = ERROR_TABLES) -> list[ErrorRow]:
    """Every row of every table, in table order and then by code."""
    return [
        ErrorRow(
            provider=table.provider,
            key=table.key,
            code=code,
            type=rule.type,
            retryable=rule.retryable,
            failover_helps=rule.failover_helps,
            reauth_required=rule.reauth_required,
            blame=rule.blame,
        )
        for table in tables
        for code, rule in sorted(table.rules.items(), key=_order)
    ]
