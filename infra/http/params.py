"""Query and path parameters of the HTTP API, checked with a clear message for each mistake.

Every reader raises `InvalidParameterError`; the API turns it into a 400 that names
the parameter, what it got and what it accepts.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

MAX_DAYS = 90
MAX_LIMIT = 1000
# `GET /v1/breakers`' page unless `limit` says otherwise (MAX_LIMIT at most).
BREAKERS_PAGE = 100
# An `after` cursor holds a row's sort key; no real one comes near this.
_MAX_CURSOR = 1024
_REGION = re.compile(r"^[A-Za-z_-]{2,16}$")
_PROVIDER = re.compile(r"^[a-z0-9_]{1,32}$")
_MAX_TEXT = 128
_OFFSET_AS_SPACE = re.compile(r" (\d{2}:?\d{2})$")
# Nothing syncyard records is older; earlier times would only reach date arithmetic
# that overflows (as_of=0001-01-01 minus `days` is before year 1: a 500, not an answer).
EARLIEST_AS_OF = datetime(2000, 1, 1, tzinfo=UTC)


class InvalidParameterError(ValueError):
    """A request parameter the API cannot use; the message says why and what would do."""


def reject_unknown(query: Mapping[str, str], allowed: Collection[str]) -> None:
    """A misspelt parameter would otherwise be ignored and answer a different question."""
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise InvalidParameterError(
            f"unknown query parameter(s) {', '.join(unknown)}; accepted: {accepted}"
        )


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameterError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {value}")
    return value


def days_param(query: Mapping[str, str], default: int) -> int:
    return int_param(query, "days", default, 1, MAX_DAYS)


def limit_param(query: Mapping[str, str], default: int = 50) -> int:
    return int_param(query, "limit", default, 1, MAX_LIMIT)


def region_param(query: Mapping[str, str]) -> str | None:
    region = query.get("region")
    if region is not None and not _REGION.match(region):
        raise InvalidParameterError(
            f"region must be 2-16 letters, '_' or '-', e.g. US; got {region!r}"
        )
    return region


def provider_param(query: Mapping[str, str]) -> str | None:
    provider = query.get("provider")
    if provider is not None and not _PROVIDER.match(provider):
        raise InvalidParameterError(
            f"provider must be 1-32 lowercase letters, digits or '_', e.g. plaid; got {provider!r}"
        )
    return provider


def text_param(value: str | None, name: str) -> str | None:
    if value is not None and not 1 <= len(value) <= _MAX_TEXT:
        raise InvalidParameterError(f"{name} must be 1-{_MAX_TEXT} characters long")
    return value


def as_of_param(query: Mapping[str, str], now: datetime) -> datetime:
    """`as_of`: an ISO 8601 time with its offset, not in the future; absent means now."""
    raw = query.get("as_of")
    if raw is None:
        return now
    # An unencoded "+00:00" arrives as " 00:00": a query string reads "+" as a space.
    raw = _OFFSET_AS_SPACE.sub(r"+\1", raw)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameterError(
            f"as_of must be an ISO 8601 time such as 2026-01-31T12:00:00+00:00, got {raw!r}"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidParameterError(
            f"as_of must carry a UTC offset (e.g. +00:00 or Z), got {raw!r}"
        )
    try:
        if value > now:
            raise InvalidParameterError(f"as_of must not be in the future, got {raw!r}")
        too_early = value < EARLIEST_AS_OF
    except OverflowError:  # an offset that moves year 1 (or 9999) out of range
        too_early = True
    if too_early:
        raise InvalidParameterError(
            f"as_of must not be before {EARLIEST_AS_OF.isoformat()}, got {raw!r}"
        )
    return value


def period(query: Mapping[str, str], now: datetime, default_days: int) -> tuple[datetime, datetime]:
    """(since, until) for `days` ending at `as_of` (or now)."""
    until = as_of_param(query, now)
    return until - timedelta(days=days_param(query, default_days)), until


def choice_param(query: Mapping[str, str], name: str, choices: Collection[str]) -> str | None:
    value = query.get(name)
    if value is not None and value not in choices:
        raise InvalidParameterError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def page_cursor(key: Sequence[str | None]) -> str:
    """An opaque `after` cursor: the sort key of a page's last row (base64url of JSON).

    Opaque to callers, who pass back what a page's `next_after` gave them; a keyset
    rather than an offset, so rows added meanwhile neither repeat nor go missing.
    """
    return base64.urlsafe_b64encode(msgspec.json.encode(list(key))).decode().rstrip("=")


def cursor_param(query: Mapping[str, str], key_type: Any) -> tuple[str | None, ...] | None:
    """`after`: a cursor `page_cursor` made, decoded strictly into `key_type` (a tuple
    type of strings and None, e.g. `tuple[str, str, str | None]`); absent: None."""
    raw = query.get("after")
    if raw is None:
        return None
    refused = InvalidParameterError(
        "after must be the next_after of an earlier page of this route, unchanged; "
        f"got {raw[:40]!r}{'...' if len(raw) > 40 else ''}"
    )
    if len(raw) > _MAX_CURSOR:
        raise refused
    try:
        data = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        key: tuple[str | None, ...] = msgspec.json.decode(data, type=key_type)
    except (binascii.Error, msgspec.ValidationError, msgspec.DecodeError):
        raise refused from None
    # PostgreSQL's text holds no NUL: such a key could only fail the query.
    if any(part is not None and "\x00" in part for part in key):
        raise refused
    return key
