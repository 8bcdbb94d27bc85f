"""Plaid's institution status: `/institutions/get_by_id` with `options.include_status`.

Plaid reports, per product at an institution, a status (HEALTHY, DEGRADED,
DOWN) and a breakdown of recent calls into `success`, `error_plaid` (Plaid's
own trouble: a link at another provider avoids it) and `error_institution`
(the bank's: every provider of that bank meets it). Plaid returns null where
it has too little traffic to say; the sandbox serves the shape too.
"""

from __future__ import annotations

import msgspec

from events.breaker import ProviderStatusReport, StatusBlame

# The products whose status says whether a sync can work: logging into the
# bank, and its transactions arriving.
WATCHED = ("item_logins", "transactions_updates")


class Breakdown(msgspec.Struct, frozen=True):
    success: float | None = None
    error_plaid: float | None = None
    error_institution: float | None = None
    refresh_interval: str | None = None


class ProductStatus(msgspec.Struct, frozen=True):
    status: str | None = None
    last_status_change: str | None = None
    breakdown: Breakdown | None = None


class InstitutionStatus(msgspec.Struct, frozen=True):
    item_logins: ProductStatus | None = None
    transactions_updates: ProductStatus | None = None


class StatusInstitution(msgspec.Struct, frozen=True):
    institution_id: str
    status: InstitutionStatus | None = None


class StatusResponse(msgspec.Struct, frozen=True):
    institution: StatusInstitution


class StatusReading(msgspec.Struct, frozen=True, kw_only=True):
    """What Plaid says of one institution now: each watched product, and whose trouble."""

    reports: list[ProviderStatusReport]
    blame: StatusBlame

    @property
    def down(self) -> bool:
        return any(r.status == "DOWN" for r in self.reports)


def reading(response: StatusResponse) -> StatusReading:
    status = response.institution.status or InstitutionStatus()
    reports, plaid, bank = [], 0.0, 0.0
    for product in WATCHED:
        found: ProductStatus | None = getattr(status, product)
        if found is None or found.status is None:
            continue  # too little traffic for Plaid to say
        breakdown = found.breakdown or Breakdown()
        reports.append(
            ProviderStatusReport(
                product=product,
                status=found.status,
                success=breakdown.success,
                error_provider=breakdown.error_plaid,
                error_institution=breakdown.error_institution,
            )
        )
        plaid += breakdown.error_plaid or 0.0
        bank += breakdown.error_institution or 0.0
    # Whose errors weigh more: Plaid's own (failover helps) or the bank's (it does not).
    return StatusReading(reports=reports, blame="provider" if plaid > bank else "institution")
