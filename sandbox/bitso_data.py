"""Deterministic fake Bitso accounts: the same seed and API key always give the same ledger."""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta
from typing import Any

# A fixed "now", so data does not drift with the wall clock between runs.
ANCHOR = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
CURRENCIES = ("mxn", "btc", "eth", "usd", "xrp")
BOOKS = ("btc_mxn", "eth_mxn", "xrp_mxn", "btc_usd", "eth_btc")
_PRICES = {"btc": 1_900_000.0, "eth": 65_000.0, "xrp": 45.0, "usd": 20.5}


def api_secret_for(seed: int, key: str) -> str:
    """The secret the sandbox issued with `key`: what bitso.com/api_setup would show once."""
    return hmac.new(f"bitso-sandbox:{seed}".encode(), key.encode(), hashlib.sha256).hexdigest()[:32]


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _amount(value: float, currency: str) -> str:
    return f"{value:.2f}" if currency in {"mxn", "usd"} else f"{value:.8f}"


def _entry(rng: random.Random, when: datetime) -> dict[str, Any]:
    eid = _hex(rng, 128)
    operation = rng.choice(("funding", "funding", "withdrawal", "trade", "trade", "fee"))
    crypto = rng.choice(("btc", "eth", "xrp"))
    if operation == "trade":
        major = rng.uniform(0.001, 0.05) * (1 if crypto == "btc" else 20)
        minor = major * _PRICES[crypto]
        sign = rng.choice((1, -1))
        updates = [(crypto, sign * major), ("mxn", -sign * minor)]
        details: dict[str, Any] = {
            "tid": rng.randrange(10**6, 10**7),
            "oid": _hex(rng, 64),
        }
    else:
        currency = rng.choice(("mxn", crypto))
        size = rng.uniform(100, 20_000) if currency == "mxn" else rng.uniform(0.001, 0.2)
        if operation == "fee":
            size = size / 500
        sign = 1 if operation == "funding" else -1
        updates = [(currency, sign * size)]
        method, method_name = (
            ("sp", "SPEI Transfer") if currency == "mxn" else (currency, currency.upper())
        )
        ref = "fid" if operation == "funding" else "wid"
        details = {
            ref: _hex(rng, 128),
            "method": method,
            "method_name": method_name,
        }
    return {
        "eid": eid,
        "operation": operation,
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "balance_updates": [{"currency": c, "amount": _amount(a, c)} for c, a in updates],
        "details": details,
    }


@functools.lru_cache(maxsize=4096)
def fake_account(
    seed: int, key: str
) -> tuple[tuple[dict[str, str], ...], tuple[dict[str, Any], ...]]:
    """(balances, ledger oldest first) for one API key."""
    rng = random.Random(f"{seed}:bitso:{key}")
    count = rng.randint(40, 90)
    start = ANCHOR - timedelta(days=120)
    times = sorted(start + timedelta(seconds=rng.randrange(0, 120 * 86400)) for _ in range(count))
    ledger = tuple(_entry(rng, when) for when in times)
    balances = []
    for currency in CURRENCIES:
        total = rng.uniform(0, 50_000) if currency in {"mxn", "usd"} else rng.uniform(0, 2)
        locked = total * rng.choice((0.0, 0.0, 0.1, 0.25))
        balances.append(
            {
                "currency": currency,
                "total": _amount(total, currency),
                "locked": _amount(locked, currency),
                "available": _amount(total - locked, currency),
                "pending_deposit": _amount(0, currency),
                "pending_withdrawal": _amount(0, currency),
            }
        )
    return tuple(balances), ledger
