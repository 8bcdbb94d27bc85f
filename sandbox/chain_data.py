"""Deterministic fake wallet histories in Esplora's shapes, from the seed and the address.

History is generated oldest first with a running balance, so a wallet never
spends more than it holds; Esplora lists it newest first.
"""

from __future__ import annotations

import functools
import random
from typing import Any

TIP_HEIGHT = 880_000
TIP_TIME = 1_738_300_000  # 2025-01-31, the sandbox's fixed "now"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _counterparty(rng: random.Random) -> str:
    # Shaped like an address; the adapter never validates counterparties.
    return "bc1q" + "".join(rng.choice(_BECH32) for _ in range(38))


def _output(address: str, value: int) -> dict[str, Any]:
    return {"scriptpubkey_type": "v0_p2wpkh", "scriptpubkey_address": address, "value": value}


def _tx(
    rng: random.Random, address: str, balance: int, height: int | None
) -> tuple[dict[str, Any], int]:
    """One transaction touching `address`, and the wallet's balance after it."""
    fee = rng.randrange(200, 5_000)
    other = _counterparty(rng)
    if balance > 50_000 and rng.random() < 0.45:
        paid = rng.randrange(10_000, balance - fee) if balance - fee > 10_000 else balance - fee
        vin = [
            {
                "txid": _hex(rng, 256),
                "vout": 0,
                "is_coinbase": False,
                "prevout": _output(address, balance),
            }
        ]
        vout = [_output(other, paid)]
        change = balance - paid - fee
        if change > 0:
            vout.append(_output(address, change))
        new_balance = change
    else:
        received = rng.randrange(20_000, 5_000_000)
        vin = [
            {
                "txid": _hex(rng, 256),
                "vout": 1,
                "is_coinbase": False,
                "prevout": _output(other, received + fee),
            }
        ]
        vout = [_output(address, received)]
        new_balance = balance + received
    status: dict[str, Any] = {"confirmed": height is not None}
    if height is not None:
        status |= {
            "block_height": height,
            "block_hash": _hex(rng, 256),
            "block_time": TIP_TIME - (TIP_HEIGHT - height) * 600,
        }
    tx = {
        "txid": _hex(rng, 256),
        "version": 2,
        "locktime": 0,
        "vin": vin,
        "vout": vout,
        "size": 222,
        "weight": 561,
        "fee": fee,
        "status": status,
    }
    return tx, new_balance


@functools.lru_cache(maxsize=4096)
def fake_wallet(
    seed: int, address: str
) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """(confirmed transactions newest first, mempool transactions) for one address."""
    rng = random.Random(f"{seed}:chain:{address}")
    height = TIP_HEIGHT - rng.randrange(20_000, 60_000)
    balance, confirmed = 0, []
    for _ in range(rng.randint(30, 70)):
        height += rng.randrange(1, 400)
        tx, balance = _tx(rng, address, balance, min(height, TIP_HEIGHT))
        confirmed.append(tx)
    mempool = []
    for _ in range(rng.randint(0, 2)):
        tx, balance = _tx(rng, address, balance, None)
        mempool.append(tx)
    return tuple(reversed(confirmed)), tuple(mempool)


def stats(address: str, txs: tuple[dict[str, Any], ...]) -> dict[str, int]:
    """Esplora's per-address totals over `txs`."""
    funded = [o["value"] for t in txs for o in t["vout"] if o["scriptpubkey_address"] == address]
    spent = [
        i["prevout"]["value"]
        for t in txs
        for i in t["vin"]
        if i["prevout"]["scriptpubkey_address"] == address
    ]
    return {
        "funded_txo_count": len(funded),
        "funded_txo_sum": sum(funded),
        "spent_txo_count": len(spent),
        "spent_txo_sum": sum(spent),
        "tx_count": len(txs),
    }
