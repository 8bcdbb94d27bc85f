"""How each provider sees a bank: its ids, its naming, its dates.

Ids are hashed from the bank's key and the bank's own id, so they are stable
for a provider and unrelated between providers. Plaid gives a posting a new
id and points back at the authorisation's (`pending_transaction_id`); MX,
Finicity and Belvo keep one id through the posting. The wire shapes live
with each provider's routes; the truth admin route reads the ids from here.
"""

from __future__ import annotations

import hashlib
import uuid

from sandbox.truth import DAY_S, Bank, BankAccount, BankTransaction, iso_date

PROVIDERS = ("plaid", "mx", "finicity", "belvo")
# MX reports a posting a day after the bank does.
MX_POSTING_LAG_S = DAY_S
_PLAID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_BASE = len(_PLAID_ALPHABET)
# Two digits per division: the ids are a new bank's main cost (issue #13). Pair n is
# digit n % 62 then digit n // 62, the order one digit at a time gives.
_PLAID_PAIRS = tuple(
    _PLAID_ALPHABET[n % _BASE] + _PLAID_ALPHABET[n // _BASE] for n in range(_BASE * _BASE)
)


def _digest(*parts: str) -> bytes:
    return hashlib.sha256(":".join(parts).encode()).digest()


def _plaid_style(raw: bytes, length: int = 37) -> str:
    """`raw` as a number written in base 62, least significant digit first, `length` digits."""
    number = int.from_bytes(raw, "big")
    chars = []
    for _ in range(length // 2):
        number, pair = divmod(number, _BASE * _BASE)
        chars.append(_PLAID_PAIRS[pair])
    if length % 2:
        chars.append(_PLAID_ALPHABET[number % _BASE])
    return "".join(chars)


def _guid(prefix: str, raw: bytes) -> str:
    return f"{prefix}-{uuid.UUID(bytes=raw[:16])}"


def numeric(key: str, digits: int = 10) -> str:
    """A stable numeric id for `key`, Finicity-style."""
    value = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) % (9 * 10 ** (digits - 1))
    return str(value + 10 ** (digits - 1))


def transaction_id(provider: str, bank: Bank, bank_id: str, variant: str = "") -> str:
    """`provider`'s id for the bank's transaction `bank_id` (Plaid: `variant` pending/posted)."""
    raw = _digest(provider, bank.key, bank_id, variant)
    if provider == "plaid":
        return _plaid_style(raw)
    if provider == "mx":
        return _guid("TRN", raw)
    if provider == "finicity":
        return numeric(raw.hex(), 11)
    return str(uuid.UUID(bytes=raw[:16], version=4))


def account_id(provider: str, bank: Bank, account: BankAccount) -> str:
    raw = _digest(provider, bank.key, "account", account.id)
    if provider == "plaid":
        return _plaid_style(raw)
    if provider == "mx":
        return _guid("ACT", raw)
    if provider == "finicity":
        return numeric(raw.hex(), 10)
    return str(uuid.UUID(bytes=raw[:16], version=4))


def plaid_ids(bank: Bank, t: BankTransaction) -> tuple[str, str | None]:
    """(transaction_id, pending_transaction_id) of `t` as Plaid shows it now.

    A posting of an authorisation is a new Plaid transaction; the
    authorisation's id is its `pending_transaction_id`.
    """
    pending_id = transaction_id("plaid", bank, t.id, "pending") if t.was_pending else None
    if t.pending:
        return pending_id or transaction_id("plaid", bank, t.id, "posted"), None
    return transaction_id("plaid", bank, t.id, "posted"), pending_id


def provider_ids(bank: Bank, t: BankTransaction) -> dict[str, dict[str, str | None]]:
    """Every provider's id for `t`, for the truth admin route."""
    plaid_id, plaid_pending = plaid_ids(bank, t)
    return {
        "plaid": {"transaction_id": plaid_id, "pending_transaction_id": plaid_pending},
        **{p: {"transaction_id": transaction_id(p, bank, t.id)} for p in PROVIDERS[1:]},
    }


def merchant_guid(merchant: str) -> str:
    """MX's guid for a merchant: one per merchant, whoever's bank it shows in."""
    return f"MCH-{uuid.uuid5(uuid.NAMESPACE_URL, f'mx:merchant:{merchant}')}"


def mx_posted_at(t: BankTransaction) -> int | None:
    return None if t.posted_at is None else t.posted_at + MX_POSTING_LAG_S


def provider_date(provider: str, t: BankTransaction) -> str:
    """The date `provider` shows: its posted date, or the authorised date while pending."""
    if provider == "mx" and t.posted_at is not None:
        return iso_date(t.posted_at + MX_POSTING_LAG_S)
    return t.date


def belvo_description(t: BankTransaction) -> str:
    """Belvo's banks' own wording: the descriptor without the card processor's prefix."""
    words = t.description.replace("*", " ").split()
    kept = [w for w in words if w not in {"SQ", "DD", "TST"}]
    return " ".join(kept).title()
