"""A deterministic directory of fake institutions, the same for a seed at both providers.

Each institution has a Plaid id (`ins_...`) and an MX code; which ones a seed
gives, and which institution a link belongs to, depend only on the seed.
"""

from __future__ import annotations

import functools
import random
import zlib

import msgspec

_NAMES = (
    ("First Platypus Bank", "US"),
    ("Gingham Savings", "US"),
    ("Tattersall Credit Union", "US"),
    ("Houndstooth Bank", "US"),
    ("Herringbone Federal", "US"),
    ("Plaid Plains Trust", "US"),
    ("Seersucker Savings & Loan", "US"),
    ("Chambray National Bank", "US"),
    ("Paisley Community Bank", "US"),
    ("Argyle Financial", "US"),
    ("Madras Mutual", "US"),
    ("Twill River Bank", "US"),
    ("Oxford Cloth Credit Union", "US"),
    ("Pinstripe Bank of Commerce", "US"),
    ("Flannel Federal Savings", "US"),
    ("Maple Ledger Bank", "CA"),
    ("Northern Tweed Credit Union", "CA"),
    ("Banco Rebozo", "MX"),
    ("Caja Sarape", "MX"),
    ("Banco Huipil", "MX"),
)
_PRODUCTS = ("auth", "balance", "identity", "transactions", "investments", "liabilities")


class FakeInstitution(msgspec.Struct, frozen=True, kw_only=True):
    plaid_id: str
    mx_code: str
    name: str
    country: str
    products: tuple[str, ...]
    url: str


@functools.lru_cache(maxsize=64)
def directory(seed: int) -> tuple[FakeInstitution, ...]:
    rng = random.Random(f"{seed}:institutions")
    institutions = []
    for name, country in _NAMES:
        slug = "".join(c for c in name.lower() if c.isalnum())[:18]
        products = ("transactions", *sorted(rng.sample(_PRODUCTS[:3] + _PRODUCTS[4:], k=2)))
        institutions.append(
            FakeInstitution(
                plaid_id=f"ins_{rng.randrange(100_000, 999_999)}",
                mx_code=f"{slug}_{rng.randrange(10, 99)}",
                name=name,
                country=country,
                products=products,
                url=f"https://www.{slug}.example",
            )
        )
    return tuple(institutions)


def by_id(seed: int, provider: str, institution_id: str) -> FakeInstitution | None:
    for institution in directory(seed):
        if institution_id == (institution.plaid_id if provider == "plaid" else institution.mx_code):
            return institution
    return None


def search(seed: int, query: str, countries: tuple[str, ...] = ()) -> list[FakeInstitution]:
    words = query.lower().split()
    return [
        i
        for i in directory(seed)
        if all(w in i.name.lower() for w in words) and (not countries or i.country in countries)
    ]


def default_for(seed: int, link_key: str) -> FakeInstitution:
    """The US institution a link made without the link flow (a bare token) belongs to."""
    us = _us(seed)
    return us[zlib.crc32(link_key.encode()) % len(us)]


@functools.lru_cache(maxsize=64)
def _us(seed: int) -> tuple[FakeInstitution, ...]:
    # Every call through a bare token asks for its bank: the list is made once (issue #13).
    return tuple(i for i in directory(seed) if i.country == "US")
