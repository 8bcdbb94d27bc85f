"""Each region's hierarchy end to end, as `make run` configures it: the settings come from
`load_settings` in the embedded mode (every provider on the sandbox, none hand-built), over
real HTTP, NATS and PostgreSQL. A connection linked at its region's first and second
provider keeps its feed equal to the bank while the first is down.

US: Plaid → MX → Finicity; Mexico: Belvo → MX; crypto: Bitso → the chain reader.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from events.commands import CreateLink, RegisterConnection
from events.results import CommandResult
from infra.bootstrap import Runtime
from infra.config import DEFAULT_HIERARCHY
from sandbox.bitso_data import api_secret_for
from sandbox.chain_data import fake_wallet
from sandbox.finicity_api_data import login_ids
from services.providers.base import LinkCredentials, LinkRequest
from tests.integration.feed_helpers import (
    assert_feed_is_the_bank,
    bank_advances,
    bank_truth,
    fold,
    provenance,
    read_over_rpc,
    sync_to_the_end,
)
from tests.support.harness import SPACE, Client, product_settings, running_syncyard
from tests.support.sandbox_admin import SandboxAdmin

pytestmark = pytest.mark.integration

SEED = 7  # the sandbox's default, as `make run` starts it


@pytest.fixture
async def syncyard(
    sandbox: str, nats_url: str, database_url: str, clean_jetstream: None, tmp_path: Path
) -> AsyncIterator[Runtime]:
    async with running_syncyard(
        product_settings(sandbox, tmp_path), nats_url, database_url
    ) as runtime:
        yield runtime


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def registration(account: str, link: LinkCredentials, region: str) -> RegisterConnection:
    return RegisterConnection(
        command_id=f"reg-{link.provider}-{account}",
        space_id=SPACE,
        account_id=account,
        region=region,
        provider=link.provider,
        item_id=link.item_id,
        access_token=link.access_token,
    )


async def register_all(
    upstream: Client, account: str, region: str, *links: LinkCredentials
) -> None:
    for link in links:
        result = await upstream.send(registration(account, link, region))
        assert result.success, result.error


def served_by(results: list[CommandResult]) -> set[str | None]:
    return {r.provider for r in results}


async def test_us_plaid_down_is_served_by_mx_then_both_down_by_finicity(
    syncyard: Runtime, upstream: Client, sandbox: str, http: aiohttp.ClientSession
) -> None:
    # Finicity names a person by a numeric customer id; its first login is the person's
    # usual bank, the one Plaid's and MX's bare tokens read for the same key.
    person = account = "5011648377"
    plaid = LinkCredentials(
        provider="plaid", item_id=f"item-{person}", access_token=f"access-sandbox-{person}"
    )
    mx = LinkCredentials(provider="mx", item_id=f"MBR-{person}", access_token=f"USR-{person}")
    login = login_ids(person)[0]
    finicity = LinkCredentials(
        provider="finicity", item_id=f"{person}:{login}", access_token=person
    )
    await register_all(upstream, account, "US", plaid, mx, finicity)
    admin = SandboxAdmin(http, sandbox)
    await admin.fault(provider="plaid", endpoint="/transactions/sync", status=500,
                      error_code="INTERNAL_SERVER_ERROR")  # fmt: skip

    during = await sync_to_the_end(upstream, account, "us-1")
    assert served_by(during) == {"mx"} and during[0].failover_used
    known = await provenance(syncyard.store, account)
    assert_feed_is_the_bank(
        await read_over_rpc(upstream.nc, account), known, await bank_truth(http, sandbox, person)
    )

    # MX goes down too while the bank moves on: the third of the hierarchy serves.
    await bank_advances(http, sandbox, person, days=2)
    await admin.fault(provider="mx", status=500)
    third = await sync_to_the_end(upstream, account, "us-2")
    assert served_by(third) == {"finicity"}
    known = await provenance(syncyard.store, account)
    assert_feed_is_the_bank(
        await read_over_rpc(upstream.nc, account),
        known,
        await bank_truth(http, sandbox, person),
        told_by="finicity",
    )


async def test_mexico_belvo_down_is_served_by_mx_and_belvo_back_adds_only_what_is_new(
    syncyard: Runtime, upstream: Client, sandbox: str, http: aiohttp.ClientSession
) -> None:
    person = account = "maria"
    assert syncyard.deps.institutions is not None
    institution = syncyard.deps.institutions.directory.get("banco_rebozo")
    assert institution is not None and institution.providers == DEFAULT_HIERARCHY["MX"]
    providers = syncyard.deps.orchestrator.providers
    belvo_name = institution.provider_ids["belvo"]
    at_belvo = await providers["belvo"].register_link(  # type: ignore[attr-defined]
        belvo_name, person, "pw-1234", timeout_s=5.0
    )
    # MX: the person links Banco Rebozo in MX's widget (the sandbox plays the person).
    widget = await providers["mx"].create_link(
        LinkRequest(user_ref=person, institution_id=institution.provider_ids["mx"],
                    country_codes=("MX",)),
        timeout_s=5.0,
    )  # fmt: skip
    admin = SandboxAdmin(http, sandbox)
    completed = await admin.complete_link("mx", widget.token)
    at_mx = await providers["mx"].exchange_token(completed["public_token"], timeout_s=5.0)
    await register_all(upstream, account, "MX", at_belvo, at_mx)
    bank = await bank_truth(http, sandbox, person, institution=institution.name)
    await admin.fault(provider="belvo", status=500, error_code="unexpected_error")

    during = await sync_to_the_end(upstream, account, "mx-1")
    assert served_by(during) == {"mx"} and during[0].failover_used
    known = await provenance(syncyard.store, account)
    assert_feed_is_the_bank(await read_over_rpc(upstream.nc, account), known, bank)

    # Belvo is back, the bank moved on: Belvo's first walk is all history, and only what
    # the feed lacks is delivered.
    await admin.clear_faults()
    await bank_advances(http, sandbox, person, days=2, institution=institution.name)
    after = await sync_to_the_end(upstream, account, "mx-2")
    assert served_by(after) == {"belvo"}
    delivered = sum(len(r.data["entries"]) for r in after if r.data)
    assert delivered < len(fold(await read_over_rpc(upstream.nc, account)))
    known = await provenance(syncyard.store, account)
    bank = await bank_truth(http, sandbox, person, institution=institution.name)
    assert_feed_is_the_bank(await read_over_rpc(upstream.nc, account), known, bank)


ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


async def test_crypto_bitso_down_is_served_by_the_chain_reader_with_the_wallet_s_history(
    syncyard: Runtime, upstream: Client, sandbox: str, http: aiohttp.ClientSession
) -> None:
    account, key = "wallet-1", "BLpkbWFduP"
    assert DEFAULT_HIERARCHY["CRYPTO"] == ("bitso", "blockchain")
    secret = api_secret_for(SEED, key)  # what bitso.com showed the person with the key
    bitso = LinkCredentials(provider="bitso", item_id=key, access_token=f"{key}:{secret}")
    chain = LinkCredentials(
        provider="blockchain", item_id=f"bitcoin:{ADDRESS}", access_token=ADDRESS
    )
    await register_all(upstream, account, "CRYPTO", bitso, chain)
    await SandboxAdmin(http, sandbox).fault(provider="bitso", status=500, error_code="0101")

    during = await sync_to_the_end(upstream, account, "crypto-1")
    assert served_by(during) == {"blockchain"} and during[0].failover_used

    # The chain itself is the truth: every confirmed transaction of the address, once,
    # with what it took from the wallet (fee included) or brought to it.
    confirmed, _mempool = fake_wallet(SEED, ADDRESS)
    feed = fold(await read_over_rpc(upstream.nc, account))
    by_txid = {e["provider_transaction_id"]: e for e in feed.values()}
    assert by_txid.keys() == {t["txid"] for t in confirmed}
    for t in confirmed:
        received = sum(o["value"] for o in t["vout"] if o["scriptpubkey_address"] == ADDRESS)
        spent = sum(i["prevout"]["value"] for i in t["vin"]
                    if i["prevout"]["scriptpubkey_address"] == ADDRESS)  # fmt: skip
        amount = Decimal(by_txid[t["txid"]]["transaction"]["amount"])
        assert amount == Decimal(spent - received) / 100_000_000


@pytest.mark.parametrize(
    "case",
    [
        ("first_platypus_bank", "US", "plaid", "mx", "/link/token/create"),
        ("banco_rebozo", "MX", "belvo", "mx", "/api/token/"),
    ],
)
async def test_link_creation_picks_the_region_s_first_provider_and_fails_over_to_the_second(
    syncyard: Runtime,
    upstream: Client,
    sandbox: str,
    http: aiohttp.ClientSession,
    case: tuple[str, str, str, str, str],
) -> None:
    institution, region, first, second, down = case

    def create(n: int) -> CreateLink:
        return CreateLink(command_id=f"link-{institution}-{n}", space_id=SPACE,
                          account_id=f"new-{institution}-{n}", institution_id=institution,
                          region=region)  # fmt: skip

    picked = await upstream.send(create(1))
    assert picked.success and picked.provider == first, picked.error

    await SandboxAdmin(http, sandbox).fault(provider=first, endpoint=down, status=500)
    failed_over = await upstream.send(create(2))
    assert failed_over.success and failed_over.provider == second, failed_over.error
    assert failed_over.failover_used


@pytest.mark.parametrize(
    ("institution", "region", "provider"),
    [
        ("bitso", "CRYPTO", "bitso"),
        ("bitcoin", "CRYPTO", "blockchain"),
        ("manual", "MANUAL", "manual"),
    ],
)
async def test_crypto_and_manual_institutions_link_at_their_own_provider(
    syncyard: Runtime, upstream: Client, institution: str, region: str, provider: str
) -> None:
    result = await upstream.send(
        CreateLink(command_id=f"link-{institution}", space_id=SPACE,
                   account_id=f"new-{institution}", institution_id=institution, region=region)
    )  # fmt: skip

    assert result.success and result.provider == provider, result.error
