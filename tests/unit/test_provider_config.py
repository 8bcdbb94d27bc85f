"""Every provider configured from the environment: the sandbox by default in the embedded
mode, and outside it each missing variable named (infra/provider_config.py)."""

from __future__ import annotations

import aiohttp
import pytest

from infra.config import DEFAULT_HIERARCHY, load_settings, refusals
from infra.provider_config import PROVIDER_ENV, provider_variable
from services.providers.belvo.adapter import BelvoAdapter
from services.providers.blockchain.adapter import BlockchainAdapter
from services.providers.finicity.adapter import FinicityAdapter
from services.providers.manual.adapter import ManualAdapter
from services.providers.registry import build_providers

pytestmark = pytest.mark.unit

SAFE_SERVERS = {"DATABASE_URL": "postgresql://db/syncyard", "SYNCYARD_CIPHER_KEY": "k" * 44}
# What each provider must be given outside the embedded mode: its address (when it has
# one) and our credentials at it. Bitso, a public chain reader and manual entry need none.
REQUIRED = {
    "plaid": ["BASE_URL", "CLIENT_ID", "SECRET"],
    "mx": ["BASE_URL", "CLIENT_ID", "SECRET"],
    "finicity": ["BASE_URL", "PARTNER_ID", "APP_KEY", "PARTNER_SECRET"],
    "belvo": ["BASE_URL", "SECRET_ID", "SECRET_PASSWORD"],
    "bitso": ["BASE_URL"],
    "blockchain": ["BASE_URL"],
    "manual": [],
}


def test_the_table_covers_every_provider_of_the_hierarchies() -> None:
    in_hierarchies = {p for order in DEFAULT_HIERARCHY.values() for p in order}

    assert in_hierarchies == set(PROVIDER_ENV) == set(REQUIRED)


async def test_the_embedded_mode_builds_every_provider_of_every_hierarchy_on_the_sandbox() -> None:
    settings = load_settings({"SYNCYARD_SANDBOX_PORT": "9123"})
    async with aiohttp.ClientSession() as session:
        adapters = build_providers(session, settings.providers)

    for region, order in DEFAULT_HIERARCHY.items():
        for provider in order:
            assert adapters[provider].name == provider, region
    for name, configured in settings.providers.items():
        if name != "manual":
            assert configured.base_url.startswith("http://127.0.0.1:9123/"), name
    assert refusals(settings) == []


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_outside_the_embedded_mode_a_provider_s_missing_variables_are_each_named(
    name: str,
) -> None:
    # One variable that asks for the provider but gives it nothing it needs.
    settings = load_settings({**SAFE_SERVERS, provider_variable(name, "TIMEOUT_S"): "3"})

    assert set(settings.providers) == {name}
    reasons = refusals(settings)
    for suffix in REQUIRED[name]:
        variable = provider_variable(name, suffix)
        assert sum(r.startswith(variable + " ") for r in reasons) == 1, (variable, reasons)
    assert len(reasons) == len(REQUIRED[name])


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("blockchain", {"SYNCYARD_BLOCKCHAIN_BASE_URL": "https://blockstream.info/api"}),
        ("bitso", {"SYNCYARD_BITSO_BASE_URL": "https://api.bitso.com"}),
        ("manual", {"SYNCYARD_MANUAL_ENABLED": "1"}),
    ],
)
def test_a_provider_that_needs_no_secret_of_ours_is_not_refused_for_lacking_one(
    name: str, env: dict[str, str]
) -> None:
    settings = load_settings({**SAFE_SERVERS, **env})

    assert set(settings.providers) == {name}
    assert refusals(settings) == []


def test_manual_entry_is_off_unless_enabled_with_a_yes() -> None:
    assert load_settings({**SAFE_SERVERS, "SYNCYARD_MANUAL_ENABLED": "0"}).providers == {}
    assert set(load_settings({**SAFE_SERVERS, "SYNCYARD_MANUAL_ENABLED": "1"}).providers) == {
        "manual"
    }


def test_finicity_names_only_the_part_of_its_secret_that_is_missing() -> None:
    env = {
        **SAFE_SERVERS,
        "SYNCYARD_FINICITY_BASE_URL": "https://api.finicity.com",
        "SYNCYARD_FINICITY_PARTNER_ID": "2445583925753",
        "SYNCYARD_FINICITY_APP_KEY": "app-key",
    }

    assert refusals(load_settings(env)) == ["SYNCYARD_FINICITY_PARTNER_SECRET is not set"]


def test_an_http_address_is_refused_for_the_new_providers_too() -> None:
    env = {**SAFE_SERVERS, "SYNCYARD_BLOCKCHAIN_BASE_URL": "http://u:pw@esplora.internal"}

    [reason] = refusals(load_settings(env))

    assert reason.startswith("SYNCYARD_BLOCKCHAIN_BASE_URL must be an https:// URL")
    assert "pw" not in reason


async def test_each_provider_s_own_variables_reach_its_adapter() -> None:
    env = {
        **SAFE_SERVERS,
        "SYNCYARD_FINICITY_BASE_URL": "https://api.finicity.com",
        "SYNCYARD_FINICITY_PARTNER_ID": "2445583925753",
        "SYNCYARD_FINICITY_APP_KEY": "app-key",
        "SYNCYARD_FINICITY_PARTNER_SECRET": "partner:secret",
        "SYNCYARD_BELVO_BASE_URL": "https://api.belvo.com",
        "SYNCYARD_BELVO_SECRET_ID": "belvo-id",
        "SYNCYARD_BELVO_SECRET_PASSWORD": "belvo-password",
        "SYNCYARD_BLOCKCHAIN_BASE_URL": "https://blockstream.info/testnet/api",
        "SYNCYARD_BLOCKCHAIN_NETWORK": "testnet",
        "SYNCYARD_BLOCKCHAIN_TIMEOUT_S": "4.5",
        "SYNCYARD_MANUAL_ENABLED": "1",
    }
    settings = load_settings(env)
    assert refusals(settings) == []
    async with aiohttp.ClientSession() as session:
        adapters = build_providers(session, settings.providers)

    finicity, belvo = adapters["finicity"], adapters["belvo"]
    chain, manual = adapters["blockchain"], adapters["manual"]
    assert isinstance(finicity, FinicityAdapter)
    assert isinstance(belvo, BelvoAdapter)
    assert isinstance(chain, BlockchainAdapter)
    assert isinstance(manual, ManualAdapter)
    assert settings.providers["finicity"].secret == "app-key:partner:secret"
    assert settings.providers["belvo"].client_id == "belvo-id"
    assert settings.providers["belvo"].secret == "belvo-password"
    assert settings.providers["blockchain"].timeout_s == 4.5
    assert (await chain.get_institution("testnet", timeout_s=1.0)).institution_id == "testnet"
