"""What the read side takes from configuration: health thresholds and per-call prices.

`infra/config.py` fills this from the environment; the defaults let tests
and a fresh checkout run without any.
"""

from __future__ import annotations

import msgspec

from projections.health_rules import HealthThresholds

# Illustrative list prices per provider call, in `currency`; a deployment sets
# its contracted ones (SYNCYARD_CALL_PRICES). Unlisted providers cost 0 and are
# reported as unpriced.
DEFAULT_CALL_PRICES: dict[str, float] = {
    "plaid": 0.05,
    "mx": 0.04,
    "finicity": 0.05,
    "belvo": 0.03,
    "bitso": 0.0,
    "blockchain": 0.0,
    "manual": 0.0,
}


class ReadModelSettings(msgspec.Struct, frozen=True, kw_only=True):
    health: HealthThresholds = HealthThresholds()
    call_prices: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_CALL_PRICES))
    currency: str = "USD"
