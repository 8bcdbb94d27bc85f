"""Settings, read once from the environment into a frozen typed object."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec

from infra.breaker_config import breaker_policies
from infra.http.auth import (
    ApiToken,
    TokenSpecError,
    parse_tokens,
    tokens_from_env,
    tokens_from_file,
)
from infra.nats_credentials import NatsCredential, credentials_from_env
from infra.provider_config import (
    PROVIDER_ENV,
    provider_refusals,
    provider_settings,
    provider_variable,
)
from infra.streams import DEAD_LETTER_MAX_AGE_S
from projections.health_rules import HealthThresholds
from projections.settings import DEFAULT_CALL_PRICES, ReadModelSettings
from services.failover import HEALTH_MARGIN
from services.providers.settings import ProviderSettings
from services.resilience.hedging import HedgePolicy
from services.resilience.policy import PolicyBook
from services.resilience.rate_limit import RateLimit
from services.resilience.retry import DEFAULT_RETRY, DEFAULT_SYNC_MAX_AGE, RetryPolicy

# Where `make run` keeps its state, relative to where it runs (SYNCYARD_STATE_DIR).
DEFAULT_STATE_DIR = ".syncyard"

DEFAULT_HIERARCHY: dict[str, tuple[str, ...]] = {
    "US": ("plaid", "mx", "finicity"),
    "MX": ("belvo", "mx"),
    "CRYPTO": ("bitso", "blockchain"),
    # A person's own entries: no other provider holds them, so there is no backup.
    "MANUAL": ("manual",),
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything syncyard reads from its environment.

    `nats_url` / `database_url` empty means: start the embedded servers. Setting
    either one leaves the embedded mode altogether (see `embedded`).
    """

    nats_url: str | None
    database_url: str | None
    state_dir: Path
    # Outside the embedded mode: accept http:// provider URLs (tests and benchmarks
    # against the local sandbox). Never for real providers: tokens would travel in clear.
    allow_insecure_providers: bool = False
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
    # How far (0-100 points) a provider's live score may trail the best before it
    # goes after it; 100 keeps the directory's order whatever the scores.
    health_margin: int = HEALTH_MARGIN
    relink_after: timedelta = timedelta(minutes=30)
    retry: dict[str, RetryPolicy] = msgspec.field(default_factory=lambda: dict(DEFAULT_RETRY))
    # A sync failing on errors time can fix is retried this long from its first receipt.
    sync_max_age_s: float = DEFAULT_SYNC_MAX_AGE.total_seconds()
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
    # How often to ask providers that publish it (Plaid) how the banks in use are
    # doing; 0 turns it off.
    provider_status_interval_s: float = 60.0
    # Who may call the HTTP API (only the tokens' SHA-256 is held). Empty: `syncyard up`
    # makes a local admin token; outside the embedded mode the API refuses to start.
    api_tokens: tuple[ApiToken, ...] = ()
    dead_letter_max_age_s: float = DEAD_LETTER_MAX_AGE_S  # how long a dead letter is kept
    # The HTTP API's own connections, and how long one of its queries may run.
    api_pool_size: int = 4
    api_statement_timeout_s: float = 5.0
    # How each role logs in to NATS (`infra/nats_roles.py`), by role: where its
    # password or .creds file is, never the secret. Embedded: the server's own.
    nats_credentials: dict[str, NatsCredential] = {}

    @property
    def embedded(self) -> bool:
        """No external server configured at all: the local, throwaway mode.

        Only then may syncyard make its own cipher key and point providers at
        the sandbox; one external server (say DATABASE_URL alone) already holds
        data worth protecting, so it is held to the production rules (`refusals`).
        """
        return not (self.nats_url or self.database_url)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:  # also refuses nan
        raise ValueError(f"a number of seconds > 0 is needed, got {text!r}")
    return value


def _margin(text: str) -> int:
    margin = int(text)
    if not 0 <= margin <= 100:
        raise ValueError(f"a margin of 0 to 100 points is needed, got {text!r}")
    return margin


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
    "health_margin": ("SYNCYARD_HEALTH_MARGIN", _margin),
    "saga_lease_s": ("SYNCYARD_SAGA_LEASE_S", float),
    "link_deadline_s": ("SYNCYARD_LINK_DEADLINE_S", float),
    "provider_status_interval_s": ("SYNCYARD_PROVIDER_STATUS_INTERVAL_S", float),
    "sync_max_age_s": ("SYNCYARD_SYNC_MAX_AGE_S", _positive),
    "api_pool_size": ("SYNCYARD_API_POOL_SIZE", int),
    "api_statement_timeout_s": ("SYNCYARD_API_STATEMENT_TIMEOUT_S", float),
    "dead_letter_max_age_s": ("SYNCYARD_DEAD_LETTER_MAX_AGE_DAYS", lambda d: _days(d) * 86_400),
}


def _days(text: str) -> float:
    days = float(text)
    if not days > 0:  # also refuses nan; 0 would mean "keep forever" to JetStream
        raise ValueError(f"a number of days > 0 is needed, got {text!r}")
    return days


_HEALTH_OVERRIDES: _Overrides = {
    "degraded_error_rate": ("SYNCYARD_HEALTH_DEGRADED_ERROR_RATE", float),
    "down_error_rate": ("SYNCYARD_HEALTH_DOWN_ERROR_RATE", float),
    "slow_response_ms": ("SYNCYARD_HEALTH_SLOW_MS", float),
    "min_calls": ("SYNCYARD_HEALTH_MIN_CALLS", int),
}


def _overridden(env: Mapping[str, str], overrides: _Overrides) -> dict[str, Any]:
    """The fields whose variable is set, read from its text; the rest are left out."""
    return {field: read(env[name]) for field, (name, read) in overrides.items() if name in env}


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
        state_dir=Path(env.get("SYNCYARD_STATE_DIR", DEFAULT_STATE_DIR)).resolve(),
        cipher_key=env.get("SYNCYARD_CIPHER_KEY") or None,
        allow_insecure_providers=env.get("SYNCYARD_INSECURE_PROVIDERS", "") in ("1", "true", "yes"),
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        public_url=env.get("SYNCYARD_PUBLIC_URL") or None,
        rate_limits=parse_rate_limits(env.get("SYNCYARD_RATE_LIMITS", "")),
        hedging={
            op.strip(): HedgePolicy()
            for op in env.get("SYNCYARD_HEDGE_OPS", "").split(",")
            if op.strip()
        },
        read_models=_read_model_settings(env),
        breakers=breaker_policies(env, PROVIDER_ENV.keys()),
        api_tokens=load_api_tokens(env),
        nats_credentials=credentials_from_env(env),
        **_overridden(env, _SETTINGS_OVERRIDES),
    )
    # The providers' default address follows the sandbox port, set or not.
    sandbox_url = env.get("SYNCYARD_SANDBOX_URL", f"http://127.0.0.1:{settings.sandbox_port}")
    providers = provider_settings(env, sandbox_url, embedded=settings.embedded)
    return msgspec.structs.replace(settings, providers=providers)


# libpq's TLS parameters: when DATABASE_URL says how to secure the connection,
# every connection syncyard opens must obey it (asyncpg reads them from the URL;
# the event store's psycopg pool gets them through `infra.eventstore`).
TLS_PARAMETERS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "channel_binding",
        "requiressl",
        "gssencmode",
    }
)


def refusals(settings: Settings, *, calls_providers: bool = True) -> list[str]:
    """What stops syncyard from starting with these settings; empty when nothing does.

    The embedded mode is local and throwaway, so nothing is asked of it. Outside
    it (any external server configured), syncyard fails closed: every reason is
    listed at once, naming the variable to set, and never printing a value.
    A process that calls no provider (`calls_providers=False`: the relay and the
    projector alone) need not name one; a provider it is given is still checked.
    """
    if settings.embedded:
        return []
    reasons = []
    if not settings.cipher_key:
        reasons.append(
            "SYNCYARD_CIPHER_KEY is not set: access tokens are stored encrypted, and outside "
            "the embedded mode the key must be yours, not one generated on the fly"
        )
    if calls_providers and not settings.providers:
        names = " or ".join(provider_variable(n, "BASE_URL") for n in ("plaid", "mx"))
        reasons.append(
            f"no provider is configured: set {names}, with its _CLIENT_ID and _SECRET, or "
            "another provider's variables (infra/provider_config.py lists them; outside the "
            "embedded mode there is no fallback to the sandbox)"
        )
    for name, provider in sorted(settings.providers.items()):
        reasons.extend(
            provider_refusals(
                name, provider, insecure_ok=settings.allow_insecure_providers, mask=mask_url
            )
        )
    return reasons


# scheme://userinfo@ : up to the last "@" of the authority (an unencoded "@" in a
# password must not leave its tail behind).
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/]*)@")
# libpq also takes a password in the query (`?password=` or `sslpassword=`).
_QUERY_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password=)[^&\s'\"]*")
# A NATS URL's lone userinfo is a token, not a user name.
_TOKEN_SCHEMES = frozenset({"nats://", "tls://", "ws://", "wss://"})


def _masked_userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match["scheme"], match["userinfo"]
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:***@"
    return f"{scheme}***@" if scheme.lower() in _TOKEN_SCHEMES else match[0]


def mask_urls(text: str) -> str:
    """`text` with the password (or NATS token) of every URL in it replaced by `***`."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_USERINFO.sub(_masked_userinfo, text))


def mask_url(url: str) -> str:
    """A URL fit to print: its password (in the userinfo or the query) is `***`."""
    return mask_urls(url)
