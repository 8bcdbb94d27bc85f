"""One way from an error-table row to the error an adapter raises, and the
refusals with no reply behind them (a gateway's page, a dropped connection,
input an adapter rejects before calling out) classified the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from services.providers.base import LinkCredentials, ProviderCallError
from services.providers.bitso.adapter import BitsoAdapter
from services.providers.blockchain.adapter import BlockchainAdapter
from services.providers.http import (
    ErrorRule,
    HttpReply,
    error_without_body,
    network_error,
)

pytestmark = pytest.mark.unit

# Nothing listens here: every refusal below must come before any call.
UNREACHABLE = "http://127.0.0.1:9"


@pytest.mark.parametrize(
    "rule",
    [
        ErrorRule("auth", False, reauth_required=True),
        ErrorRule("maintenance", True, failover_helps=False),
        ErrorRule("validation", False, failover_helps=True),
    ],
)
def test_a_rule_becomes_an_error_carrying_all_it_classifies(rule: ErrorRule) -> None:
    exc = rule.error("acme", "E42", "acme: no", http_status=503, retry_after_s=2.5)

    assert exc.error.provider == "acme"
    assert exc.error.code == "E42"
    assert exc.error.message == "acme: no"
    assert exc.error.type == rule.type
    assert exc.error.retryable == rule.retryable
    assert exc.reauth_required == rule.reauth_required
    assert exc.failover_helps == rule.failover_helps
    assert exc.http_status == 503
    assert exc.retry_after_s == 2.5


def test_a_gateway_page_on_a_server_error_is_the_provider_being_down() -> None:
    reply = HttpReply(status=503, body=b"<html>busy</html>", retry_after_s=4.0)

    exc = error_without_body("acme", "/things", reply)

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "http_503",
        "provider_down",
        True,
    )
    assert exc.error.message == "/things answered HTTP 503"
    assert (exc.http_status, exc.retry_after_s) == (503, 4.0)
    assert exc.failover_helps


def test_a_gateway_page_on_a_client_error_is_an_invalid_response() -> None:
    exc = error_without_body("acme", "/things", HttpReply(status=418, body=b"teapot"))

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "invalid_response",
        "unknown",
        True,
    )
    assert exc.http_status == 418
    assert exc.failover_helps


def test_a_dropped_connection_is_a_retryable_network_error_that_fails_over() -> None:
    exc = network_error("acme", "/things", "timeout", "no answer within 1s")

    assert (exc.error.code, exc.error.type, exc.error.retryable) == ("timeout", "network", True)
    assert exc.error.message == "/things: no answer within 1s"
    assert exc.http_status is None
    assert exc.failover_helps
    assert not exc.reauth_required


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


Refusal = Callable[[aiohttp.ClientSession], Awaitable[object]]
_BAD_BITSO_LINK = LinkCredentials(provider="bitso", item_id="k", access_token="no-secret")
_BAD_CHAIN_LINK = LinkCredentials(provider="blockchain", item_id="x", access_token="not-an-address")


def _bitso(session: aiohttp.ClientSession) -> BitsoAdapter:
    return BitsoAdapter(session, base_url=UNREACHABLE)


def _chain(session: aiohttp.ClientSession) -> BlockchainAdapter:
    return BlockchainAdapter(session, base_url=UNREACHABLE)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (
            lambda s: _bitso(s).exchange_token("key-without-secret", timeout_s=1.0),
            ("bitso", "invalid_api_key", "validation", False),
        ),
        (
            lambda s: _bitso(s).get_institution("elsewhere", timeout_s=1.0),
            ("bitso", "INSTITUTION_NOT_FOUND", "validation", False),
        ),
        (
            lambda s: _chain(s).get_institution("litecoin", timeout_s=1.0),
            ("blockchain", "INSTITUTION_NOT_FOUND", "validation", False),
        ),
        (
            lambda s: _chain(s).exchange_token("not-an-address", timeout_s=1.0),
            ("blockchain", "INVALID_ADDRESS", "validation", False),
        ),
        (
            lambda s: _chain(s).get_accounts(_BAD_CHAIN_LINK, timeout_s=1.0),
            ("blockchain", "INVALID_ADDRESS", "auth", False),
        ),
    ],
)
async def test_input_an_adapter_refuses_is_not_retried_and_does_not_fail_over(
    session: aiohttp.ClientSession, call: Refusal, expected: tuple[str, str, str, bool]
) -> None:
    with pytest.raises(ProviderCallError) as caught:
        await call(session)

    exc = caught.value
    provider, code, type_, reauth = expected
    assert (exc.error.provider, exc.error.code, exc.error.type) == (provider, code, type_)
    assert not exc.error.retryable
    assert exc.reauth_required is reauth
    assert not exc.failover_helps
    assert exc.http_status is None


async def test_a_bitso_key_pair_we_cannot_read_needs_the_person_but_the_chain_reader_serves(
    session: aiohttp.ClientSession,
) -> None:
    # The key is Bitso's alone: a link at the chain reader reads the same wallet.
    with pytest.raises(ProviderCallError) as caught:
        await _bitso(session).get_accounts(_BAD_BITSO_LINK, timeout_s=1.0)

    exc = caught.value
    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        "invalid_access_token",
        "auth",
        False,
    )
    assert exc.reauth_required and exc.failover_helps
    assert exc.error.blame == "caller"
