"""Settings, read once from the environment into a frozen typed object."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from infra.http.auth import (
    ApiToken,
    TokenSpecError,
    parse_tokens,
    tokens_from_env,
    tokens_from_file,
)
from projections.health_rules import HealthThresholds
from projections.settings import DEFAULT_CALL_PRICES, ReadModelSettings
from services.providers.settings import ProviderSettings
from services.resilience.hedging import HedgePolicy
from services.resilience.policy import PolicyBook
from services.resilience.rate_limit import RateLimit
from services.resilience.retry import DEFAULT_RETRY, RetryPolicy

DEFAULT_HIERARCHY: dict[str, tuple[str, ...]] = {
    "US": ("plaid", "mx", "finicity"),
    "MX": ("belvo", "mx"),
    "CRYPTO": ("bitso", "blockchain"),
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything syncyard reads from its environment.

    `nats_url` / `database_url` empty means: start the embedded servers.
    """

    nats_url: str | None
    database_url: str | None
    state_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    sandbox_port: int = 8099
    cipher_key: str | None = None
    worker_concurrency: int = 256
    call_timeout_s: float = 10.0
    otlp_endpoint: str | None = None
    providers: dict[str, ProviderSettings] = {}
    breakers: PolicyBook = PolicyBook()
    rate_limits: dict[str, RateLimit] = {}
    hedging: dict[str, HedgePolicy] = {}  # by op; empty: no operation is hedged
    relink_after: timedelta = timedelta(minutes=30)
    retry: dict[str, RetryPolicy] = msgspec.field(default_factory=lambda: dict(DEFAULT_RETRY))
    # Half the worker's concurrency: one stuck provider can hold at most half the slots.
    bulkhead_max_concurrent: int = 128
    bulkhead_max_wait_s: float = 10.0
    hierarchy: dict[str, tuple[str, ...]] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_HIERARCHY)
    )
    read_models: ReadModelSettings = ReadModelSettings()
    # Sagas: how long a runner holds a saga before another may resume it, and
    # the address providers' webhooks reach (None: this process's HTTP API).
    saga_lease_s: float = 30.0
    public_url: str | None = None
    link_deadline_s: float = 1800.0  # how long a person has to finish a link
    # Who may call the HTTP API (only the tokens' SHA-256 is held). Empty: `syncyard up`
    # makes a local admin token; outside the embedded mode the API refuses to start.
    api_tokens: tuple[ApiToken, ...] = ()

    @property
    def embedded(self) -> bool:
        return not (self.nats_url and self.database_url)


# A field's environment variable and how its text is read.
_Overrides = Mapping[str, tuple[str, Callable[[str], Any]]]

# The variables that override a Settings field; unset, the field keeps the
# default written on Settings, so no default is spelled out twice.
_SETTINGS_OVERRIDES: _Overrides = {
    "http_host": ("SYNCYARD_HTTP_HOST", str),
    "http_port": ("SYNCYARD_HTTP_PORT", int),
    "sandbox_port": ("SYNCYARD_SANDBOX_PORT", int),
    "worker_concurrency": ("SYNCYARD_WORKER_CONCURRENCY", int),
    "bulkhead_max_concurrent": ("SYNCYARD_BULKHEAD_MAX_CONCURRENT", int),
    "bulkhead_max_wait_s": ("SYNCYARD_BULKHEAD_MAX_WAIT_S", float),
    "call_timeout_s": ("SYNCYARD_CALL_TIMEOUT_S", float),
    "saga_lease_s": ("SYNCYARD_SAGA_LEASE_S", float),
    "link_deadline_s": ("SYNCYARD_LINK_DEADLINE_S", float),
}

_HEALTH_OVERRIDES: _Overrides = {
    "degraded_error_rate": ("SYNCYARD_HEALTH_DEGRADED_ERROR_RATE", float),
    "down_error_rate": ("SYNCYARD_HEALTH_DOWN_ERROR_RATE", float),
    "slow_response_ms": ("SYNCYARD_HEALTH_SLOW_MS", float),
    "min_calls": ("SYNCYARD_HEALTH_MIN_CALLS", int),
}


def _overridden(env: Mapping[str, str], overrides: _Overrides) -> dict[str, Any]:
    """The fields whose variable is set, read from its text; the rest are left out."""
    return {field: read(env[name]) for field, (name, read) in overrides.items() if name in env}


def _provider_settings(env: Mapping[str, str], sandbox_url: str) -> dict[str, ProviderSettings]:
    providers = {}
    for name in ("plaid", "mx"):
        prefix = f"SYNCYARD_{name.upper()}_"
        providers[name] = ProviderSettings(
            name=name,
            base_url=env.get(prefix + "BASE_URL", f"{sandbox_url}/{name}"),
            client_id=env.get(prefix + "CLIENT_ID", "sandbox-client"),
            secret=env.get(prefix + "SECRET", "sandbox-secret"),
            **_overridden(env, {"timeout_s": (prefix + "TIMEOUT_S", float)}),
        )
    return providers


def parse_rate_limits(spec: str) -> dict[str, RateLimit]:
    """`plaid=100/m,plaid/sync.transactions=50/m+2000/h` → limits by key."""
    limits: dict[str, RateLimit] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, rule = item.partition("=")
        per: dict[str, int] = {}
        for term in rule.split("+"):
            count, _, unit = term.strip().partition("/")
            if unit not in ("m", "h") or not count.isdigit():
                raise ValueError(f"rate limit {item!r}: write COUNT/m or COUNT/h, joined by +")
            per["per_minute" if unit == "m" else "per_hour"] = int(count)
        limits[key.strip()] = RateLimit(**per)
    return limits


def parse_call_prices(spec: str) -> dict[str, float]:
    """`plaid=0.05,mx=0.04` → the default prices with these replaced or added."""
    prices = dict(DEFAULT_CALL_PRICES)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        provider, _, price = item.partition("=")
        try:
            value = float(price)
        except ValueError:
            value = -1.0
        if not provider.strip() or not value >= 0:  # also refuses nan
            message = f"call price {item!r}: write PROVIDER=PRICE (>= 0), e.g. plaid=0.05"
            raise ValueError(message)
        prices[provider.strip()] = value
    return prices


def _read_model_settings(env: Mapping[str, str]) -> ReadModelSettings:
    return ReadModelSettings(
        health=HealthThresholds(**_overridden(env, _HEALTH_OVERRIDES)),
        call_prices=parse_call_prices(env.get("SYNCYARD_CALL_PRICES", "")),
        **_overridden(env, {"currency": ("SYNCYARD_CALL_PRICE_CURRENCY", str)}),
    )


def load_api_tokens(env: Mapping[str, str]) -> tuple[ApiToken, ...]:
    """`SYNCYARD_API_TOKENS` and the entries of `SYNCYARD_API_TOKENS_FILE`, together."""
    entries = tokens_from_env(env.get("SYNCYARD_API_TOKENS", ""))
    if path := env.get("SYNCYARD_API_TOKENS_FILE"):
        try:
            entries += tokens_from_file(Path(path))
        except OSError as exc:
            raise TokenSpecError(f"SYNCYARD_API_TOKENS_FILE {path}: {exc.strerror}") from None
    return parse_tokens(entries)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    settings = Settings(
        nats_url=env.get("NATS_URL") or None,
        database_url=env.get("DATABASE_URL") or None,
        state_dir=Path(env.get("SYNCYARD_STATE_DIR", ".syncyard")).resolve(),
        cipher_key=env.get("SYNCYARD_CIPHER_KEY") or None,
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        public_url=env.get("SYNCYARD_PUBLIC_URL") or None,
        rate_limits=parse_rate_limits(env.get("SYNCYARD_RATE_LIMITS", "")),
        hedging={
            op.strip(): HedgePolicy()
            for op in env.get("SYNCYARD_HEDGE_OPS", "").split(",")
            if op.strip()
        },
        read_models=_read_model_settings(env),
        api_tokens=load_api_tokens(env),
        **_overridden(env, _SETTINGS_OVERRIDES),
    )
    # The providers' default address follows the sandbox port, set or not.
    sandbox_url = env.get("SYNCYARD_SANDBOX_URL", f"http://127.0.0.1:{settings.sandbox_port}")
    return msgspec.structs.replace(settings, providers=_provider_settings(env, sandbox_url))
