"""Which providers' webhooks took effect: a replayed webhook is acknowledged, not acted on again.

Each verified webhook is named by its `event_id` (the provider's own id, or a
digest of what it signed: `services/providers/base.py`). The receiver claims
that name before acting (`claim`), and afterwards either keeps it (`handled`:
the webhook took effect) or lets it go (`release`: it was ignored, or the
receiver failed and the provider will send it again). A claim whose holder
crashed, or is merely slow, lapses after `CLAIM_TIMEOUT`, so the provider's
retry is acted on. Each claim carries a token of its own (`Claimed.token`), and
`handled` and `release` act only for the claim's current holder: a holder whose
claim lapsed and was taken over, finishing late, must neither drop the new
holder's claim (a delivery arriving meanwhile would then act on the webhook
beside the new holder, instead of being told it is in flight) nor mark done
what the new holder is still acting on (whose failure must let the event come
back).
A delivery that finds the claim held by another still in flight is told so
(`Claim.IN_FLIGHT`), apart from one that already took effect
(`Claim.HANDLED`): only the latter may be acknowledged, for the one in flight
may yet fail, and a provider told "received" would not send it again.
Webhooks that were only ignored are not kept: a webhook posted to the wrong
saga first must not make the right saga refuse it later.

Rows live for `RETENTION`: past it a replay is acted on again, which is
harmless (every reaction is idempotent: a saga completes once), and Plaid's
and Finicity's signed timestamps refuse such old replays anyway. The table is
shared by every replica, so a replay is caught whichever replica receives it.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

RETENTION = timedelta(days=30)
CLAIM_TIMEOUT = timedelta(seconds=60)
_PURGE_EVERY_S = 3600.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS syncyard_webhooks_seen (
    provider text NOT NULL,
    event_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    handled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (provider, event_id)
);
-- The claim's holder (tables of earlier versions had none: their claims lapse).
ALTER TABLE syncyard_webhooks_seen ADD COLUMN IF NOT EXISTS holder uuid;
CREATE INDEX IF NOT EXISTS syncyard_webhooks_seen_by_age ON syncyard_webhooks_seen (received_at);
"""
_SETUP_LOCK = 0x5_1100C
# Marked handled, the row made anew (held by nobody) if a lapsed claim's new holder
# released it; whether `$3` held the claim.
_HANDLED = """
INSERT INTO syncyard_webhooks_seen AS seen (provider, event_id, handled) VALUES ($1, $2, true)
ON CONFLICT (provider, event_id) DO UPDATE SET handled = true, received_at = now()
RETURNING seen.holder IS NOT DISTINCT FROM $3::uuid
"""

# A row is ours if it is new, or an unhandled claim that lapsed: then it is held
# by our token.
_CLAIM = """
INSERT INTO syncyard_webhooks_seen AS seen (provider, event_id, holder) VALUES ($1, $2, $4)
ON CONFLICT (provider, event_id) DO UPDATE SET received_at = now(), holder = EXCLUDED.holder
    WHERE NOT seen.handled AND seen.received_at < now() - $3::interval
RETURNING true
"""


class Claim(enum.Enum):
    """What `WebhookLog.claim` found."""

    # Ours to act on: new, or a lapsed claim taken over.
    OURS = "ours"
    # It took effect already: acknowledge, do not act.
    HANDLED = "handled"
    # Another delivery holds it and has not finished: the provider must send it again.
    IN_FLIGHT = "in_flight"


@dataclass(frozen=True)
class Claimed:
    """What `WebhookLog.claim` found; `token` names this delivery's claim when it is ours."""

    claim: Claim
    token: uuid.UUID | None = None


# Attempts at a claim whose holder lets it go between our insert and our look.
_CLAIM_ATTEMPTS = 3


class WebhookLog:
    """The webhooks that took effect, per provider and event id, kept for `retention`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retention: timedelta = RETENTION,
        claim_timeout: timedelta = CLAIM_TIMEOUT,
    ) -> None:
        self.pool = pool
        self.retention = retention
        self.claim_timeout = claim_timeout
        self._purged_at = float("-inf")

    async def setup(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
            await conn.execute(SCHEMA)

    async def claim(self, provider: str, event_id: str) -> Claimed:
        """Whether this webhook may be acted on now (with the token `handled` and
        `release` then take), took effect already, or is being acted on by another
        delivery."""
        if time.monotonic() - self._purged_at > _PURGE_EVERY_S:
            await self.purge()
        token = uuid.uuid4()
        for _ in range(_CLAIM_ATTEMPTS):
            if await self.pool.fetchval(_CLAIM, provider, event_id, self.claim_timeout, token):
                return Claimed(Claim.OURS, token)
            handled = await self.pool.fetchval(
                "SELECT handled FROM syncyard_webhooks_seen WHERE provider = $1 AND event_id = $2",
                provider,
                event_id,
            )
            if handled is not None:
                return Claimed(Claim.HANDLED if handled else Claim.IN_FLIGHT)
            # Released between the two statements: claim it again.
        return Claimed(Claim.IN_FLIGHT)

    async def handled(self, provider: str, event_id: str, token: uuid.UUID) -> bool:
        """The webhook took effect: a replay within the retention is acknowledged only.

        Whoever holds the claim now: the effect happened. A delivery whose claim
        lapsed and was taken over still marks it; left unmarked, the new holder's
        failure would drop the row (`release`) and a resend would act a third time.
        The row is written again if that release came first. True when `token`
        still held the claim, False when another delivery had taken it over.
        """
        held = await self.pool.fetchval(_HANDLED, provider, event_id, token)
        return bool(held)

    async def release(self, provider: str, event_id: str, token: uuid.UUID) -> bool:
        """The webhook took no effect: the next delivery of it is acted on.

        Only while `token`'s claim holds it; False when the claim lapsed and another
        delivery took it over (its claim stays).
        """
        status = await self.pool.execute(
            "DELETE FROM syncyard_webhooks_seen "
            "WHERE provider = $1 AND event_id = $2 AND holder = $3 AND NOT handled",
            provider,
            event_id,
            token,
        )
        return _rows(status) > 0

    async def purge(self) -> int:
        """Forget webhooks older than the retention; how many were forgotten."""
        self._purged_at = time.monotonic()
        status = await self.pool.execute(
            "DELETE FROM syncyard_webhooks_seen WHERE received_at < now() - $1::interval",
            self.retention,
        )
        return _rows(status)


def _rows(status: str) -> int:
    """The rows a statement's status (`UPDATE 1`, `DELETE 0`) says it touched."""
    return int(status.rpartition(" ")[2])
