"""Telling one purchase from another across providers: ids, amounts, descriptions. No I/O.

Providers name one purchase differently: a clean merchant name at one
("Whole Foods Market"), the card network's raw descriptor at another
("WHOLEFDS MKT #123 BERKELEY CA"). `similar` scores two descriptions from
0 to 1 as the best of three views: the characters of their words run
together, the words they share, and one's start against the other's.
Card-processor prefixes, store numbers, state codes and other tokens of two
letters or fewer are dropped first.
"""

from __future__ import annotations

import difflib
import re
import uuid
from decimal import Decimal
from typing import Any

import msgspec

_NAMESPACE = uuid.UUID("a3f1c0de-6c2b-4e9f-9d3e-2b7f1f0e5a11")
_NOISE = re.compile(r"[^a-z ]+")
# Card processors' and billers' prefixes, which say nothing of the merchant.
_PROCESSOR_TOKENS = frozenset({"sq", "tst", "dd", "pp", "des", "ck", "pos", "ach"})


class Tolerance(msgspec.Struct, frozen=True, kw_only=True):
    """How alike two providers' reports of one purchase must be."""

    days: int = 3
    min_similarity: float = 0.6
    # While either side is pending its amount may still change (a tip, a hold):
    # then only descriptions this alike let amounts differ, unless the card was
    # used on the same day at both (then `min_similarity` is enough).
    pending_similarity: float = 0.8


def normalise(description: str) -> str:
    """ "SQ *BLUE BOTTLE #12 OAKLAND CA" → "blue bottle oakland"."""
    words = _NOISE.sub(" ", description.lower()).split()
    return " ".join(w for w in words if len(w) > 2 and w not in _PROCESSOR_TOKENS)


def cents(amount: Any) -> int:
    return int((Decimal(str(amount)) * 100).to_integral_value())


def new_id(connection_key: str, provider: str, provider_id: str) -> str:
    """Deterministic, so a redelivered sync assigns the same id again."""
    return str(uuid.uuid5(_NAMESPACE, f"{connection_key}/{provider}/{provider_id}"))


def similar(a: str, b: str) -> float:
    """How alike two normalised descriptions are, from 0 to 1."""
    words_a, words_b = a.split(), b.split()
    if not words_a or not words_b:
        return 0.0
    run_a, run_b = "".join(words_a), "".join(words_b)
    together = difflib.SequenceMatcher(None, run_a, run_b).ratio()
    shared = len(set(words_a) & set(words_b)) / min(len(set(words_a)), len(set(words_b)))
    shorter, longer = sorted((run_a, run_b), key=len)
    start = difflib.SequenceMatcher(None, longer[: len(shorter)], shorter).ratio()
    return max(together, shared, start)
