"""Asks providers how the banks syncyard's connections use are doing, and opens a bank's
breaker when the provider reports it down: before any call fails.

Plaid publishes this per institution (`/institutions/get_by_id` with
`include_status`): `item_logins` or `transactions_updates` DOWN opens the
breaker of Plaid at that bank, with an event that says the provider's status
did it (not failed calls) and whose trouble it reported: Plaid's own
(`error_plaid`: a link at another provider avoids it) or the bank's
(`error_institution`: every provider of that bank meets it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from projections.connection_status import institutions_using
from services.institutions.directory import InstitutionDirectory
from services.providers.base import ProviderCallError
from services.providers.plaid.adapter import PlaidAdapter
from services.resilience.board import BreakerBoard

log = logging.getLogger(__name__)
STATUS_TIMEOUT_S = 5.0


class ProviderStatusPoller:
    """Every `interval_s`, the status of each bank with a link at `adapter`'s provider."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        board: BreakerBoard,
        directory: InstitutionDirectory,
        adapter: PlaidAdapter,
        *,
        interval_s: float,
    ) -> None:
        self.pool = pool
        self.board = board
        self.directory = directory
        self.adapter = adapter
        self.interval_s = interval_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # After one interval, not at once: a start does not cost a round of calls.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
            if not stop.is_set():
                await self.poll_once()

    async def poll_once(self) -> int:
        """One round; how many breakers the provider's reports opened."""
        provider = self.adapter.name
        async with self.pool.acquire() as conn:
            banks = await institutions_using(conn, provider)
        opened = 0
        for institution_id, region in banks:
            provider_id = self.directory.provider_institution_id(institution_id, provider)
            if provider_id is None:
                continue  # the provider's id for this bank is unknown: nothing to ask
            try:
                reading = await self.adapter.institution_status(
                    provider_id, timeout_s=STATUS_TIMEOUT_S
                )
            except ProviderCallError as exc:
                log.warning("%s status of %s: %s", provider, institution_id, exc.error.code)
                continue
            if reading.down and await self.board.provider_status(
                provider, region, institution_id, reading.reports, reading.blame
            ):
                opened += 1
                log.info("%s reports %s down: its breaker opened", provider, institution_id)
        return opened
