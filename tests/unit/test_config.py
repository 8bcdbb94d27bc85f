"""Settings from the environment: every variable read and parsed, every unset one
left at the default the README documents."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import aiohttp
import msgspec
import pytest

from events.subjects import DLQ_STREAM
from infra.bootstrap import pg_parts
from infra.config import load_settings, mask_url, refusals
from infra.eventstore import SyncyardPostgresFactory, library_env
from infra.streams import stream_configs
from infra.telemetry import MaskingFormatter
from services.providers.base import WebhookRejectedError
from services.providers.registry import build_providers
from services.resilience.hedging import HedgePolicy
from services.resilience.policy import BreakerPolicy, PolicyBook
from services.resilience.rate_limit import RateLimit

pytestmark = pytest.mark.unit


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = load_settings({})

    assert settings.embedded
    assert (settings.nats_url, settings.database_url) == (None, None)
    assert settings.state_dir == Path(".syncyard").resolve()
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.sandbox_port == 8099
    assert settings.worker_concurrency == 256
    assert (settings.bulkhead_max_concurrent, settings.bulkhead_max_wait_s) == (128, 10.0)
    assert settings.call_timeout_s == 10.0
    assert (settings.saga_lease_s, settings.link_deadline_s) == (30.0, 1800.0)
    assert (settings.cipher_key, settings.otlp_endpoint, settings.public_url) == (None, None, None)
    assert (settings.rate_limits, settings.hedging) == ({}, {})
    assert settings.read_models.currency == "USD"
    assert set(settings.providers) == {
        "plaid", "mx", "finicity", "belvo", "bitso", "blockchain", "manual"
    }  # fmt: skip
    for name in ("plaid", "mx"):
        provider = settings.providers[name]
        assert provider.base_url == f"http://127.0.0.1:8099/{name}"
        assert (provider.client_id, provider.secret) == ("sandbox-client", "sandbox-secret")
    assert settings.providers["blockchain"].base_url == "http://127.0.0.1:8099/chain"
    assert {p.timeout_s for p in settings.providers.values()} == {10.0}


def test_every_variable_is_read_and_parsed(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "NATS_URL": "nats://nats:4222",
            "DATABASE_URL": "postgresql://db/syncyard",
            "SYNCYARD_STATE_DIR": str(tmp_path),
            "SYNCYARD_HTTP_HOST": "10.0.0.7",
            "SYNCYARD_HTTP_PORT": "9080",
            "SYNCYARD_SANDBOX_PORT": "9099",
            "SYNCYARD_CIPHER_KEY": "k" * 44,
            "SYNCYARD_WORKER_CONCURRENCY": "64",
            "SYNCYARD_BULKHEAD_MAX_CONCURRENT": "16",
            "SYNCYARD_BULKHEAD_MAX_WAIT_S": "2.5",
            "SYNCYARD_CALL_TIMEOUT_S": "4",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
            "SYNCYARD_SAGA_LEASE_S": "12",
            "SYNCYARD_LINK_DEADLINE_S": "600",
            "SYNCYARD_PUBLIC_URL": "https://sync.example",
            "SYNCYARD_RATE_LIMITS": "plaid=100/m",
            "SYNCYARD_HEDGE_OPS": "sync.transactions, accounts.get",
            "SYNCYARD_CALL_PRICE_CURRENCY": "EUR",
            "SYNCYARD_PLAID_BASE_URL": "https://production.plaid.com",
            "SYNCYARD_PLAID_CLIENT_ID": "client",
            "SYNCYARD_PLAID_SECRET": "secret",
            "SYNCYARD_PLAID_TIMEOUT_S": "3",
            "SYNCYARD_MX_BASE_URL": "https://api.mx.com",
            "SYNCYARD_MX_CLIENT_ID": "mx-client",
            "SYNCYARD_MX_SECRET": "mx-key",
            "SYNCYARD_MX_WEBHOOK_SECRET": "mx-hooks:hook-password",
        }
    )

    assert not settings.embedded
    assert settings.state_dir == tmp_path.resolve()
    assert (settings.http_host, settings.http_port, settings.sandbox_port) == (
        "10.0.0.7",
        9080,
        9099,
    )
    assert settings.cipher_key == "k" * 44
    assert settings.worker_concurrency == 64
    assert (settings.bulkhead_max_concurrent, settings.bulkhead_max_wait_s) == (16, 2.5)
    assert settings.call_timeout_s == 4.0
    assert settings.otlp_endpoint == "http://otel:4318"
    assert (settings.saga_lease_s, settings.link_deadline_s) == (12.0, 600.0)
    assert settings.public_url == "https://sync.example"
    assert settings.rate_limits == {"plaid": RateLimit(per_minute=100)}
    assert settings.hedging == {"sync.transactions": HedgePolicy(), "accounts.get": HedgePolicy()}
    assert settings.read_models.currency == "EUR"
    plaid, mx = settings.providers["plaid"], settings.providers["mx"]
    assert (plaid.base_url, plaid.client_id, plaid.secret) == (
        "https://production.plaid.com",
        "client",
        "secret",
    )
    assert plaid.timeout_s == 3.0
    assert (mx.base_url, mx.client_id, mx.secret) == ("https://api.mx.com", "mx-client", "mx-key")
    assert mx.webhook_secret == "mx-hooks:hook-password"
    assert mx.timeout_s == 10.0
    assert refusals(settings) == []


def test_a_sandbox_url_wins_over_the_sandbox_port() -> None:
    settings = load_settings(
        {"SYNCYARD_SANDBOX_PORT": "9099", "SYNCYARD_SANDBOX_URL": "http://sandbox:8700"}
    )

    assert settings.providers["mx"].base_url == "http://sandbox:8700/mx"


def test_empty_server_urls_mean_the_embedded_servers() -> None:
    settings = load_settings({"NATS_URL": "", "DATABASE_URL": "", "SYNCYARD_CIPHER_KEY": ""})

    assert settings.embedded
    assert settings.cipher_key is None


@pytest.mark.parametrize(
    "variable", ["SYNCYARD_HTTP_PORT", "SYNCYARD_CALL_TIMEOUT_S", "SYNCYARD_MX_TIMEOUT_S"]
)
def test_a_number_that_is_not_one_is_refused(variable: str) -> None:
    with pytest.raises(ValueError, match=r"could not convert|invalid literal"):
        load_settings({variable: "ten"})


def test_the_health_margin_is_read_and_bounded() -> None:
    assert load_settings({}).health_margin == 15
    assert load_settings({"SYNCYARD_HEALTH_MARGIN": "100"}).health_margin == 100
    with pytest.raises(ValueError, match="0 to 100 points"):
        load_settings({"SYNCYARD_HEALTH_MARGIN": "101"})


def test_the_breaker_rule_is_read_for_every_provider_and_for_one() -> None:
    assert load_settings({}).breakers == PolicyBook()  # BreakerPolicy's documented defaults
    book = load_settings(
        {
            "SYNCYARD_BREAKER_WINDOW_S": "120",
            "SYNCYARD_BREAKER_FAILURE_RATE": "0.6",
            "SYNCYARD_BREAKER_MINIMUM_CALLS": "40",
            "SYNCYARD_BREAKER_FAILURE_THRESHOLD": "8",
            "SYNCYARD_BREAKER_OPEN_S": "30",
            "SYNCYARD_BREAKER_MX_OPEN_S": "90",
            "SYNCYARD_BREAKER_MX_FAILURE_RATE": "off",
        }
    ).breakers
    rule = BreakerPolicy(
        window_s=120.0, failure_rate=0.6, minimum_calls=40, failure_threshold=8, open_timeout_s=30.0
    )
    assert book.for_("plaid", "US") == book.default == rule
    # MX keeps the default's other numbers, its own on top.
    assert book.for_("mx", "MX") == msgspec.structs.replace(
        rule, open_timeout_s=90.0, failure_rate=None
    )
    never = load_settings(
        {"SYNCYARD_BREAKER_FAILURE_RATE": "off", "SYNCYARD_BREAKER_FAILURE_THRESHOLD": "none"}
    ).breakers.default
    assert (never.failure_rate, never.failure_threshold) == (None, None)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SYNCYARD_BREAKER_WINDOW", "60", "names no breaker setting"),
        ("SYNCYARD_BREAKER_PLAIDD_OPEN_S", "60", "no provider 'plaidd'"),
        ("SYNCYARD_BREAKER_MXOPEN_S", "60", "names no breaker setting"),
        ("SYNCYARD_BREAKER_FAILURE_RATE", "1.5", "at most 1"),
        ("SYNCYARD_BREAKER_MINIMUM_CALLS", "0", "at least 1"),
        ("SYNCYARD_BREAKER_PLAID_OPEN_S", "0", "> 0"),
    ],
)
def test_a_breaker_variable_that_says_nothing_sensible_is_refused_by_name(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        load_settings({variable: value})
    assert variable in str(refused.value)


SAFE_SERVERS = {
    "NATS_URL": "nats://nats:4222",
    "DATABASE_URL": "postgresql://db/syncyard?sslmode=verify-full",
    "SYNCYARD_CIPHER_KEY": "k" * 44,
}
PLAID = {
    "SYNCYARD_PLAID_BASE_URL": "https://production.plaid.com",
    "SYNCYARD_PLAID_CLIENT_ID": "client",
    "SYNCYARD_PLAID_SECRET": "secret",
}


@pytest.mark.parametrize("server", ["NATS_URL", "DATABASE_URL"])
def test_one_external_server_alone_already_leaves_the_embedded_mode(server: str) -> None:
    settings = load_settings({server: SAFE_SERVERS[server]})

    assert not settings.embedded
    assert any("SYNCYARD_CIPHER_KEY" in reason for reason in refusals(settings))


def test_outside_the_embedded_mode_no_provider_falls_back_to_the_sandbox() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql://db/syncyard"})

    assert settings.providers == {}
    reasons = refusals(settings)
    assert any("SYNCYARD_PLAID_BASE_URL" in r and "no provider" in r for r in reasons)


def test_a_process_that_calls_no_provider_need_not_name_one_but_one_named_is_checked() -> None:
    # The relay and projector alone (`serve --components relay,projector`, as `up` runs them).
    assert refusals(load_settings(SAFE_SERVERS), calls_providers=False) == []
    insecure = {**SAFE_SERVERS, **PLAID, "SYNCYARD_PLAID_BASE_URL": "http://plaid.internal"}
    [reason] = refusals(load_settings(insecure), calls_providers=False)
    assert reason.startswith("SYNCYARD_PLAID_BASE_URL must be an https:// URL")


def test_a_provider_named_without_its_address_or_secrets_is_refused_by_name() -> None:
    settings = load_settings({**SAFE_SERVERS, **PLAID, "SYNCYARD_MX_CLIENT_ID": "mx-client"})

    assert settings.providers["mx"].base_url == ""
    assert refusals(settings) == [
        "SYNCYARD_MX_BASE_URL is not set: mx is configured but has no address",
        "SYNCYARD_MX_SECRET is not set",
    ]


def test_an_http_provider_url_outside_the_embedded_mode_is_refused() -> None:
    env = {**SAFE_SERVERS, **PLAID, "SYNCYARD_PLAID_BASE_URL": "http://u:pw@plaid.internal"}

    [reason] = refusals(load_settings(env))

    assert reason.startswith("SYNCYARD_PLAID_BASE_URL must be an https:// URL")
    assert "pw" not in reason.replace("https", "")
    # The sandbox's own tests opt in, loudly; nothing else relaxes the rule.
    assert refusals(load_settings({**env, "SYNCYARD_INSECURE_PROVIDERS": "1"})) == []


def test_the_embedded_mode_asks_for_nothing() -> None:
    assert refusals(load_settings({})) == []


async def test_mx_webhooks_are_let_in_with_the_configured_secret() -> None:
    env = {
        **SAFE_SERVERS,
        "SYNCYARD_MX_BASE_URL": "https://api.mx.com",
        "SYNCYARD_MX_CLIENT_ID": "mx-client",
        "SYNCYARD_MX_SECRET": "mx-key",
        "SYNCYARD_MX_WEBHOOK_SECRET": "mx-hooks:hook-password",
    }
    async with aiohttp.ClientSession() as session:
        mx = build_providers(session, load_settings(env).providers)["mx"]
        basic = base64.b64encode(b"mx-hooks:hook-password").decode()
        body = b'{"type": "AGGREGATION", "action": "member_data_updated", "member_guid": "MBR-1"}'

        event = await mx.handle_webhook(
            {"Authorization": f"Basic {basic}"}, body, now=0.0, timeout_s=1.0
        )
        assert event.provider == "mx"
        wrong = {"Authorization": "Basic " + base64.b64encode(b"mx-hooks:guess").decode()}
        with pytest.raises(WebhookRejectedError, match="wrong webhook credentials"):
            await mx.handle_webhook(wrong, body, now=0.0, timeout_s=1.0)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (
            "postgresql://app:s3cret@db:5432/sy?sslmode=require",
            "postgresql://app:***@db:5432/sy?sslmode=require",
        ),
        ("postgresql://app:p@ss@db/sy", "postgresql://app:***@db/sy"),
        (
            "postgresql://app@db/sy?password=s3cret&sslpassword=k3y",
            "postgresql://app@db/sy?password=***&sslpassword=***",
        ),
        ("nats://t0ken@nats:4222", "nats://***@nats:4222"),
        ("nats://nats:4222", "nats://nats:4222"),
    ],
)
def test_a_url_is_printed_without_its_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_log_lines_mask_a_url_password_wherever_it_appears() -> None:
    formatter = MaskingFormatter("%(message)s")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "connecting to %s", ("postgresql://a:s3cret@db/x",), None
    )

    assert formatter.format(record) == "connecting to postgresql://a:***@db/x"


def test_a_database_url_keeps_its_tls_settings_for_the_event_store() -> None:
    url = "postgresql://app:pw@db:5432/sy?sslmode=verify-full&sslrootcert=/etc/ca.pem"

    factory = SyncyardPostgresFactory(library_env(pg_parts(url), "k" * 44))

    kwargs = factory.datastore.pool.kwargs
    assert isinstance(kwargs, dict)
    assert (kwargs["sslmode"], kwargs["sslrootcert"]) == ("verify-full", "/etc/ca.pem")
    assert (kwargs["host"], kwargs["dbname"], kwargs["password"]) == ("db", "sy", "pw")


def test_dead_letters_are_kept_thirty_days_unless_told_otherwise() -> None:
    assert load_settings({}).dead_letter_max_age_s == 30 * 86_400
    dlq = next(c for c in stream_configs() if c.name == DLQ_STREAM)
    assert dlq.max_age == 30 * 86_400

    settings = load_settings({"SYNCYARD_DEAD_LETTER_MAX_AGE_DAYS": "7"})
    assert settings.dead_letter_max_age_s == 7 * 86_400
    with pytest.raises(ValueError, match="days > 0"):
        load_settings({"SYNCYARD_DEAD_LETTER_MAX_AGE_DAYS": "0"})
