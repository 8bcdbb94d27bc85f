"""The chain reader's error table, address checksums and history cursor, without I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.providers.blockchain.address import is_valid_address
from services.providers.blockchain.errors import CHAIN_ERRORS, chain_error
from services.providers.blockchain.wire import ChainCursor, Tx, TxStatus, plan_page
from services.providers.http import ErrorRule

pytestmark = pytest.mark.unit

ADDRESS = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"


@pytest.mark.parametrize(("status", "entry"), sorted(CHAIN_ERRORS.items()))
def test_each_reader_status_is_classified_by_the_table(
    status: int, entry: tuple[str, ErrorRule]
) -> None:
    code, rule = entry

    exc = chain_error(status, f"Invalid Bitcoin address {ADDRESS}".encode(), secrets=(ADDRESS,))

    assert (exc.error.code, exc.error.type, exc.error.retryable) == (
        code,
        rule.type,
        rule.retryable,
    )
    assert ADDRESS not in str(exc)
    assert ADDRESS not in repr(exc)


@given(status=st.integers(min_value=100, max_value=599), raw=st.binary(max_size=2000))
def test_any_reply_is_classified_without_raising(status: int, raw: bytes) -> None:
    exc = chain_error(status, raw)

    assert exc.error.provider == "blockchain"
    assert len(exc.error.message) <= 300


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "bitcoin"),  # P2PKH, the genesis block's
        ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", "bitcoin"),  # P2SH
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "bitcoin"),  # BIP173 P2WPKH
        ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "bitcoin"),  # upper case is allowed
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", "bitcoin"),  # BIP350
        ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "testnet"),
    ],
)
def test_well_formed_addresses_pass(address: str, network: str) -> None:
    assert is_valid_address(address, network)


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "bitcoin"),  # one character off
        ("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "bitcoin"),  # bad bech32 checksum
        ("bc1qW508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "bitcoin"),  # mixed case
        ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", "bitcoin"),
        # Taproot encoded with bech32 instead of bech32m (BIP350's invalid vector).
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "bitcoin"),
        ("", "bitcoin"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "dogecoin"),
    ],
)
def test_malformed_or_foreign_addresses_fail(address: str, network: str) -> None:
    assert not is_valid_address(address, network)


@given(st.text(max_size=100))
def test_any_text_is_checked_without_raising(text: str) -> None:
    assert isinstance(is_valid_address(text), bool)


def txs(*ids: int) -> list[Tx]:
    return [Tx(txid=f"{i:064x}", vin=[], vout=[], status=TxStatus(confirmed=True)) for i in ids]


def test_a_first_walk_pages_down_history_then_remembers_its_newest_transaction() -> None:
    page, cursor, more = plan_page(ChainCursor(), txs(*range(30, 5, -1)), count=10)

    assert [t.txid for t in page] == [f"{i:064x}" for i in range(30, 20, -1)]
    assert more
    assert cursor == ChainCursor(top=f"{30:064x}", last=f"{21:064x}")

    page, cursor, more = plan_page(cursor, txs(5, 4), count=10)

    assert len(page) == 2
    assert not more
    assert cursor == ChainCursor(stop=f"{30:064x}")


def test_a_later_walk_stops_at_what_the_last_one_delivered() -> None:
    page, cursor, more = plan_page(ChainCursor(stop=f"{30:064x}"), txs(33, 32, 31, 30, 29), 10)

    assert [t.txid for t in page] == [f"{i:064x}" for i in (33, 32, 31)]
    assert not more
    assert cursor == ChainCursor(stop=f"{33:064x}")


def test_nothing_new_keeps_the_old_stop() -> None:
    page, cursor, more = plan_page(ChainCursor(stop=f"{30:064x}"), txs(30, 29), count=10)

    assert (page, cursor, more) == ([], ChainCursor(stop=f"{30:064x}"), False)


@pytest.mark.parametrize("text", ["v2:::", "v1:zz::", "v1:a:b", "garbage", f"v1:{'0' * 63}::"])
def test_foreign_cursors_are_rejected(text: str) -> None:
    assert ChainCursor.decode(text) is None


def test_cursors_round_trip() -> None:
    cursor = ChainCursor(stop=f"{1:064x}", top=f"{2:064x}", last=f"{3:064x}")

    assert ChainCursor.decode(cursor.encode()) == cursor
    assert ChainCursor.decode(None) == ChainCursor()
