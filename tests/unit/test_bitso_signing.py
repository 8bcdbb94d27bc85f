"""Bitso request signing against vectors computed independently (openssl dgst -hmac)."""

from __future__ import annotations

import pytest

from services.providers.bitso.signing import (
    NonceSource,
    authorization,
    signature,
)

pytestmark = pytest.mark.unit

SECRET = "bitso-sandbox-secret-0123456789"


@pytest.mark.parametrize(
    ("nonce", "method", "path_qs", "body", "expected"),
    [
        (
            "1700000000000000",
            "GET",
            "/v3/balance/",
            "",
            "453647194f47a38e40745ed424562328dc5752b46ef46613f52c69320ccb3f6c",
        ),
        (
            "1700000000000001",
            "GET",
            "/v3/ledger/?sort=asc&limit=2&marker=c4ca4238a0b923820dcc509a6f75849b",
            "",
            "4923fa12697d423f9463a6b3ae9f01c6946f324ba43a346335b9120588029f40",
        ),
        (
            "1700000000000002",
            "POST",
            "/v3/orders/",
            '{"book":"btc_mxn","side":"buy"}',
            "af4fa6d96347176d6560fbece57439986dd8a1c905501c2919a883dd8906aa57",
        ),
    ],
)
def test_signature_matches_an_independently_computed_hmac(
    nonce: str, method: str, path_qs: str, body: str, expected: str
) -> None:
    assert signature(SECRET, nonce, method, path_qs, body) == expected


def test_authorization_header_is_key_nonce_and_signature() -> None:
    header = authorization("KEY1", SECRET, "1700000000000000", method="GET", path_qs="/v3/balance/")

    assert header == (
        "Bitso KEY1:1700000000000000:"
        "453647194f47a38e40745ed424562328dc5752b46ef46613f52c69320ccb3f6c"
    )


def test_nonces_grow_even_when_the_clock_stands_still_or_goes_back() -> None:
    times = iter([100.0, 100.0, 99.0, 101.0])
    nonces = NonceSource(clock=lambda: next(times))

    issued = [int(nonces.next()) for _ in range(4)]

    assert issued == [100_000_000, 100_000_001, 100_000_002, 101_000_000]
