"""`python -m bench.resilience [--quick]`: what the resilience decisions cost, and what they buy.

Issue #4's benchmarks, one after the other on the same servers (embedded NATS
and PostgreSQL in a temporary folder, or NATS_URL / DATABASE_URL), the
provider sandbox in its own process, syncyard in this one, in one table:

1. `bench.decisions`: decision overhead per provider call, through the sandbox
   and with no I/O, and each piece alone.
2. `bench.failover`: failover when the primary fails fast, versus the backup alone.
3. `bench.open_breakers`: every candidate's breaker open, the orchestrator's
   answer and a command's result end to end, versus healthy calls.
4. `bench.eventual`: the eventual success rate under `seed-failure-model`
   with the primary alone and with three linked providers, with the provider
   calls and their cost.

Each runs alone too (`python -m bench.<name>`). Sections 1-3 share one set of
resilience pieces (one HTTP session, pool and store). docs/BENCHMARKS.md keeps a copy.
"""

from __future__ import annotations

from bench import decisions, eventual, failover, open_breakers
from bench.cli import run
from bench.parts import parts
from bench.report import machine, render
from bench.servers import fresh_database, sandbox, servers
from tests.support.sandbox_admin import SandboxAdmin


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    async with servers() as (nats_url, pg_url), sandbox() as sandbox_url:
        async with parts(sandbox_url, await fresh_database(pg_url)) as p:
            overhead = await decisions.measure(p, sandbox_url, scale)
            fails_over = await failover.measure(p, SandboxAdmin(p.session, sandbox_url), scale)
            all_open = await open_breakers.measure(p, nats_url, pg_url, sandbox_url, scale)
        runs = await eventual.measure(nats_url, pg_url, sandbox_url, scale)
    heading = f"syncyard resilience benchmark (issue #4): {machine()}, scale {scale}"
    rows = [
        *decisions.rows(overhead),
        *failover.rows(fails_over),
        *open_breakers.rows(all_open),
        *eventual.rows(runs),
    ]
    notes = [*decisions.notes(overhead), *failover.notes(fails_over), *eventual.notes(runs)]
    print(render(heading, rows, notes))


if __name__ == "__main__":
    run(main, "python -m bench.resilience")
