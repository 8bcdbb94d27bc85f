"""Esplora's address and transaction bodies, their normalised shape, and our cursor.

Esplora pages an address's confirmed history newest first, 25 at a time,
continuing after the last txid seen. Syncing wants the opposite (what is
new since last time), so the cursor remembers three txids: `stop`, the
newest transaction a finished walk delivered; `top`, the newest of the
walk in progress; and `last`, where that walk continues. A walk ends at
`stop` or at the end of history, and its `top` becomes the next `stop`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

SATS_PER_BTC = 100_000_000
ESPLORA_PAGE = 25  # Esplora's fixed page size for /txs/chain
_TXID = re.compile(r"[0-9a-f]{64}")


class Stats(msgspec.Struct, frozen=True):
    funded_txo_sum: int = 0
    spent_txo_sum: int = 0
    tx_count: int = 0


class AddressInfo(msgspec.Struct, frozen=True):
    address: str
    chain_stats: Stats
    mempool_stats: Stats = Stats()


class Output(msgspec.Struct, frozen=True):
    value: int
    scriptpubkey_address: str | None = None


class Input(msgspec.Struct, frozen=True):
    prevout: Output | None = None
    is_coinbase: bool = False


class TxStatus(msgspec.Struct, frozen=True):
    confirmed: bool
    block_height: int | None = None
    block_time: int | None = None


class Tx(msgspec.Struct, frozen=True):
    txid: str
    vin: list[Input]
    vout: list[Output]
    status: TxStatus
    fee: int = 0


class ChainCursor(msgspec.Struct, frozen=True):
    stop: str = ""
    top: str = ""
    last: str = ""

    def encode(self) -> str:
        return f"v1:{self.stop}:{self.top}:{self.last}"

    @classmethod
    def decode(cls, text: str | None) -> ChainCursor | None:
        """The cursor `text` stands for; None if it is not one of ours."""
        if not text:
            return cls()
        version, *txids = text.split(":")
        if version != "v1" or len(txids) != 3 or any(t and not _TXID.fullmatch(t) for t in txids):
            return None
        return cls(stop=txids[0], top=txids[1], last=txids[2])


def plan_page(cursor: ChainCursor, txs: list[Tx], count: int) -> tuple[list[Tx], ChainCursor, bool]:
    """What to deliver from one newest-first page, the next cursor, and whether more is left."""
    take = max(1, min(count, ESPLORA_PAGE))
    page = txs[:take]
    more_behind = len(txs) > take or len(txs) >= ESPLORA_PAGE
    ids = [t.txid for t in page]
    reached_stop = bool(cursor.stop) and cursor.stop in ids
    if reached_stop:
        page = page[: ids.index(cursor.stop)]
    top = cursor.top or (page[0].txid if page else "")
    if reached_stop or not more_behind or not page:
        return page, ChainCursor(stop=top or cursor.stop), False
    return page, ChainCursor(stop=cursor.stop, top=top, last=page[-1].txid), True


def account_id(network: str, address: str) -> str:
    """A stable account id for a wallet that does not spell out the address."""
    return hashlib.sha256(f"chain:{network}:{address}".encode()).hexdigest()[:24]


def normalise_address(network: str, info: AddressInfo) -> dict[str, Any]:
    confirmed = info.chain_stats.funded_txo_sum - info.chain_stats.spent_txo_sum
    pending = info.mempool_stats.funded_txo_sum - info.mempool_stats.spent_txo_sum
    return {
        "account_id": account_id(network, info.address),
        "name": f"{network.capitalize()} wallet",
        "type": "investment",
        "subtype": "crypto wallet",
        "mask": info.address[-4:],
        "balances": {
            "current": (confirmed + pending) / SATS_PER_BTC,
            "available": confirmed / SATS_PER_BTC,
            "iso_currency_code": "BTC",
        },
    }


def normalise_tx(network: str, address: str, tx: Tx) -> dict[str, Any]:
    """A transfer seen from the wallet: what left it (fee included) minus what reached it."""
    received = sum(o.value for o in tx.vout if o.scriptpubkey_address == address)
    spent = sum(
        i.prevout.value
        for i in tx.vin
        if i.prevout is not None and i.prevout.scriptpubkey_address == address
    )
    when = datetime.fromtimestamp(tx.status.block_time or 0, UTC)
    return {
        "transaction_id": tx.txid,
        "account_id": account_id(network, address),
        # Our convention (Plaid's): money out is positive.
        "amount": (spent - received) / SATS_PER_BTC,
        "iso_currency_code": "BTC",
        "date": when.date().isoformat(),
        "authorized_date": None,
        "name": "Sent bitcoin" if spent > received else "Received bitcoin",
        "merchant_name": None,
        "pending": not tx.status.confirmed,
        # A transaction keeps its txid from the mempool into a block.
        "pending_transaction_id": None,
    }
