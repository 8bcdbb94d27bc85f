"""The breakers' rule from the environment: `SYNCYARD_BREAKER_*`, for all providers or one.

`SYNCYARD_BREAKER_WINDOW_S=300` sets the default policy's field;
`SYNCYARD_BREAKER_MX_WINDOW_S=600` sets it for MX alone, on top of the
default (`PolicyBook.overrides`, keyed by provider: every region and bank of
that provider). Unset, a field keeps `BreakerPolicy`'s default, so no number
is written twice. A variable under the prefix that names no field, or a
provider syncyard does not know, is refused at start: a typo must not
silently leave the default in place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import msgspec

from services.resilience.policy import BreakerPolicy, PolicyBook

PREFIX = "SYNCYARD_BREAKER_"
_OFF = frozenset({"off", "none"})


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise ValueError(f"a number of seconds > 0 is needed, got {text!r}")
    return value


def _rate(text: str) -> float | None:
    if text.strip().lower() in _OFF:
        return None
    value = float(text)
    if not 0 < value <= 1:  # also refuses nan
        raise ValueError(f"a failure rate above 0 and at most 1 (or off) is needed, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"a count of at least 1 is needed, got {text!r}")
    return value


def _floor(text: str) -> int | None:
    return None if text.strip().lower() in _OFF else _count(text)


# Variable suffix → (BreakerPolicy field, how its text is read). The rule's
# numbers (services/resilience/policy.py explains them) and the open time.
FIELDS: Mapping[str, tuple[str, Callable[[str], Any]]] = {
    "WINDOW_S": ("window_s", _seconds),
    "FAILURE_RATE": ("failure_rate", _rate),
    "MINIMUM_CALLS": ("minimum_calls", _count),
    "FAILURE_THRESHOLD": ("failure_threshold", _floor),
    "OPEN_S": ("open_timeout_s", _seconds),
}


def _read(name: str, text: str) -> tuple[str, Any]:
    for suffix, (field, read) in FIELDS.items():
        if name == suffix or name.endswith("_" + suffix):
            try:
                return field, read(text)
            except ValueError as exc:
                raise ValueError(f"{PREFIX}{name}: {exc}") from None
    known = ", ".join(PREFIX + suffix for suffix in FIELDS)
    raise ValueError(f"{PREFIX}{name} names no breaker setting; known: {known}")


def breaker_policies(env: Mapping[str, str], providers: Collection[str]) -> PolicyBook:
    """The default policy with the variables set, and one override per provider named."""
    default: dict[str, Any] = {}
    by_provider: dict[str, dict[str, Any]] = {}
    for variable, text in env.items():
        if not variable.startswith(PREFIX):
            continue
        name = variable.removeprefix(PREFIX)
        field, value = _read(name, text)
        suffix = next(s for s, (f, _) in FIELDS.items() if f == field)
        provider = name.removesuffix(suffix).removesuffix("_").lower()
        if not provider:
            default[field] = value
        elif provider in providers:
            by_provider.setdefault(provider, {})[field] = value
        else:
            raise ValueError(
                f"{variable}: no provider {provider!r}; known: {', '.join(sorted(providers))}"
            )
    policy = msgspec.structs.replace(BreakerPolicy(), **default)
    return PolicyBook(
        default=policy,
        overrides={
            provider: msgspec.structs.replace(policy, **fields)
            for provider, fields in sorted(by_provider.items())
        },
    )
