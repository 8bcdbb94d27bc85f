"""Settings from the environment: every variable read and parsed, every unset one
left at the default the README documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import load_settings
from services.resilience.hedging import HedgePolicy
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
    assert set(settings.providers) == {"plaid", "mx"}
    for name, provider in settings.providers.items():
        assert provider.base_url == f"http://127.0.0.1:8099/{name}"
        assert (provider.client_id, provider.secret) == ("sandbox-client", "sandbox-secret")
        assert provider.timeout_s == 10.0


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
    assert mx.base_url == "http://127.0.0.1:9099/mx"
    assert mx.timeout_s == 10.0


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
