"""`python -m bench.failover [--quick]`: failover when the primary fails fast (goal: ≤ +5 ms).

Issue #4, section (2) of `python -m bench.resilience`. Plaid answers
INTERNAL_SERVER_ERROR at once, so a sync linked at Plaid and MX fails over to MX;
the baseline is the same sync with the MX link alone, timed in turn.
"""

from __future__ import annotations

import statistics

from bench.cli import run
from bench.parts import REGION, Parts, alone, sync_cmd
from bench.report import Row, machine, ms, pct, render
from bench.timing import ROUND_ROBIN, interleaved
from tests.support.links import link_for
from tests.support.sandbox_admin import SandboxAdmin

GOAL_FAILOVER_EXTRA_MS = 5.0


async def measure(p: Parts, admin: SandboxAdmin, scale: float) -> dict[str, list[float]]:
    """Seconds per sync: `failover` (plaid fails, mx answers) and `backup` (mx alone)."""
    await admin.fault(
        provider="plaid", endpoint="/transactions/sync", error_code="INTERNAL_SERVER_ERROR"
    )
    orch = p.deployed()  # nothing feeds this board: plaid's breaker stays closed, plaid is called
    both = [link_for("plaid", "f"), link_for("mx", "f")]
    cmd = sync_cmd("failover")

    async def failover() -> None:
        outcome = await orch.execute_with_failover(cmd, both, REGION)
        assert outcome.success, outcome.error
        assert outcome.failover_used
        assert outcome.provider == "mx"

    async def backup_alone() -> None:
        outcome = await orch.execute_with_failover(cmd, both[1:], REGION)
        assert outcome.success, outcome.error

    try:
        return await interleaved({"failover": failover, "backup": backup_alone}, int(1000 * scale))
    finally:
        await admin.clear_faults()


def rows(samples: dict[str, list[float]]) -> list[Row]:
    fo, backup = samples["failover"], samples["backup"]
    extra = statistics.median(fo) - statistics.median(backup)
    return [
        (
            "(2) failover, plaid answers INTERNAL_SERVER_ERROR at once → mx",
            f"p50 {ms(statistics.median(fo))}, p99 {ms(pct(fo, 99))}",
            f"mx alone p50 {ms(statistics.median(backup))}, p99 {ms(pct(backup, 99))}: "
            f"+{extra * 1000:.2f} ms (goal ≤ +{GOAL_FAILOVER_EXTRA_MS:.0f} ms)",
        )
    ]


def notes(samples: dict[str, list[float]]) -> list[str]:
    return [f"(2): {ROUND_ROBIN}"]


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    async with alone() as (p, _, _, sandbox_url):
        samples = await measure(p, SandboxAdmin(p.session, sandbox_url), scale)
    heading = f"syncyard failover benchmark (issue #4): {machine()}, scale {scale}"
    print(render(heading, rows(samples), notes(samples)))


if __name__ == "__main__":
    run(main, "python -m bench.failover")
