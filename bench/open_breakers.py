"""`python -m bench.open_breakers [--quick]`: the answer when every breaker is open (≤ 5 ms).

Issue #4, section (3) of `python -m bench.resilience`. Every candidate's
breaker open: first the orchestrator's answer beside a healthy call as
deployed; then a command's deferred result end to end through syncyard
(worker, relay, projector, deferral timer, breaker follower in this process,
the command over JetStream) beside a healthy sync of the same connection.
"""

from __future__ import annotations

import statistics
import uuid

import msgspec

from bench.cli import run
from bench.parts import (
    PROVIDERS,
    REGION,
    Parts,
    alone,
    new_board,
    open_every_breaker,
    sync_cmd,
    through,
)
from bench.report import Row, machine, median_us, ms, pct, render
from bench.servers import bench_settings, fresh_database
from bench.timing import interleaved
from infra.bootstrap import ALL_COMPONENTS
from tests.support.harness import client, register, running_syncyard, sync
from tests.support.links import link_for

GOAL_ALL_OPEN_MS = 5.0


class OpenBreakers(msgspec.Struct, kw_only=True):
    """Seconds per answer or per command."""

    orchestrator: list[float]  # `execute_with_failover`, every breaker open
    healthy_call: list[float]  # the same orchestrator, its breakers closed: the baseline
    refused: list[float]  # end to end: command → deferred result, every breaker open
    healthy: list[float]  # end to end: command → result of a healthy sync


async def orchestrator_answers(p: Parts, scale: float) -> tuple[list[float], list[float]]:
    """The deployed orchestrator's answer with every breaker open, and a healthy call's."""
    # The healthy baseline first: the breakers opened below are recorded in the
    # store, where a board that has not seen a provider yet would read them.
    healthy = through(p.deployed(), [link_for("plaid", "o")], "healthy")
    healthy_call = (await interleaved({"healthy": healthy}, int(1000 * scale)))["healthy"]
    board = new_board(p.app)
    await open_every_breaker(board)
    orch = p.orchestrator(gate=board, limiter=p.free, bulkheads=True)
    links = [link_for(provider, "x") for provider in PROVIDERS]
    cmd = sync_cmd("all-open")

    async def refused() -> None:
        outcome = await orch.execute_with_failover(cmd, links, REGION)
        assert outcome.error is not None
        assert outcome.error.code == "all_providers_unavailable"
        assert not outcome.attempts

    return (await interleaved({"open": refused}, int(2000 * scale)))["open"], healthy_call


async def end_to_end(
    nats_url: str, db_url: str, sandbox_url: str, scale: float
) -> tuple[list[float], list[float]]:
    """Sequential syncs of one three-provider connection: healthy, then every breaker open."""
    run, n = uuid.uuid4().hex[:8], int(200 * scale)
    space = f"bench-{run}"
    async with (
        running_syncyard(
            bench_settings(sandbox_url, PROVIDERS),
            nats_url,
            db_url,
            components=ALL_COMPONENTS - {"api"},
        ) as runtime,
        client(nats_url) as upstream,
    ):
        for provider in PROVIDERS:
            reg = register("open", provider, f"reg-{run}-open-{provider}", space_id=space)
            result = await upstream.send(reg)
            assert result.success, result.error

        healthy = []
        for i in range(n):
            cmd = sync("open", f"healthy-{run}-{i}", space_id=space, count=5)
            result = await upstream.send(cmd)
            assert result.success, result.error
            healthy.append(upstream.latency(cmd.command_id))
        await open_every_breaker(runtime.board)
        refused = []
        for i in range(n):
            cmd = sync("open", f"refused-{run}-{i}", space_id=space, count=5)
            result = await upstream.send(cmd)
            assert result.deferred_until is not None, result
            assert result.error is not None
            assert result.error.code == "all_providers_unavailable", result.error
            refused.append(upstream.latency(cmd.command_id))
    return healthy, refused


def rows(r: OpenBreakers) -> list[Row]:
    return [
        (
            "(3) every breaker open: `execute_with_failover` answers",
            f"p50 {median_us(r.orchestrator):.0f} µs, p99 {pct(r.orchestrator, 99) * 1e6:.0f} µs",
            f"vs a healthy call as deployed {median_us(r.healthy_call):.0f} µs",
        ),
        (
            "(3) every breaker open: command → deferred result, end to end",
            f"p50 {ms(statistics.median(r.refused))}, p99 {ms(pct(r.refused, 99))}",
            f"healthy sync p50 {ms(statistics.median(r.healthy))}, "
            f"p99 {ms(pct(r.healthy, 99))} (goal ≤ {GOAL_ALL_OPEN_MS:.0f} ms)",
        ),
    ]


async def measure(
    p: Parts, nats_url: str, pg_url: str, sandbox_url: str, scale: float
) -> OpenBreakers:
    """The orchestrator on `p`, then syncyard end to end on a fresh database."""
    orchestrator, healthy_call = await orchestrator_answers(p, scale)
    healthy, refused = await end_to_end(nats_url, await fresh_database(pg_url), sandbox_url, scale)
    return OpenBreakers(
        orchestrator=orchestrator, healthy_call=healthy_call, refused=refused, healthy=healthy
    )


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    async with alone() as (p, nats_url, pg_url, sandbox_url):
        r = await measure(p, nats_url, pg_url, sandbox_url, scale)
    heading = f"syncyard open breakers benchmark (issue #4): {machine()}, scale {scale}"
    print(render(heading, rows(r)))


if __name__ == "__main__":
    run(main, "python -m bench.open_breakers")
