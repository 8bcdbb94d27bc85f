"""Query and path parameters of the HTTP API, checked with a clear message for each mistake.

Every reader raises `InvalidParameterError`; the API turns it into a 400 that names
the parameter, what it got and what it accepts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta

MAX_DAYS = 90
MAX_LIMIT = 1000
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
