"""`python -m bench.decisions [--quick]`: what the resilience decisions cost per provider call.

Issue #4, section (1) of `python -m bench.resilience`. `execute_with_failover`
against the sandbox with and without the breaker gate, the rate limiter (no
limit configured, and a configured one: a PostgreSQL round trip) and
bulkheads, versus a bare HTTP call; then the same orchestrators with a
provider that answers in process, and each piece timed alone, with no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

from bench.cli import run
from bench.parts import (
    OP,
    PROVIDERS,
    REGION,
    Parts,
    alone,
    attempt_event,
    new_board,
    through,
)
from bench.report import Row, machine, median_us, render
from bench.timing import ROUND_ROBIN, interleaved, mean_us
from infra.config import DEFAULT_HIERARCHY
from services.failover import order_links
from services.orchestrator import Orchestrator
from services.providers.base import LinkCredentials, ProviderAdapter, TransactionsPage
from services.resilience.domain import Observation, Window, decide_on_call, new_breaker
from services.resilience.policy import BreakerPolicy
from tests.support.links import link_for

GOAL_DECISIONS_US = 200.0


class StubAdapter:
    """A provider that answers at once, in process: timing the decisions with no I/O."""

    PAGE = TransactionsPage(added=[], modified=[], removed=[], next_cursor="c", has_more=False)

    def __init__(self, name: str) -> None:
        self.name = name

    async def sync_transactions(
        self, link: LinkCredentials, *, cursor: str | None, count: int, timeout_s: float
    ) -> TransactionsPage:
        return self.PAGE


async def measure(p: Parts, sandbox_url: str, scale: float) -> dict[str, float]:
    """Medians in µs by configuration; `window_*`: one call folded into a window that size."""
    n, micro_n = int(1000 * scale), int(4000 * scale)
    links = [link_for("plaid", "o")]
    body = {"client_id": "bench", "secret": "b", "access_token": links[0].access_token, "count": 5}

    async def bare() -> None:
        async with p.session.post(f"{sandbox_url}/plaid/transactions/sync", json=body) as resp:
            await resp.read()

    def call(orch: Orchestrator) -> Callable[[], Awaitable[object]]:
        return through(orch, links, "overhead")

    http = await interleaved(
        {
            "bare": bare,
            "plain": call(p.orchestrator()),
            "gate": call(p.orchestrator(gate=p.board)),
            "free": call(p.orchestrator(limiter=p.free)),
            "limited": call(p.orchestrator(limiter=p.limited)),
            "bulkhead": call(p.orchestrator(bulkheads=True)),
            "deployed": call(p.deployed()),
            "deployed_limited": call(
                p.orchestrator(gate=p.board, limiter=p.limited, bulkheads=True)
            ),
        },
        n,
    )
    out = {f"http_{label}": median_us(s) for label, s in http.items()}

    # The same orchestrators with a provider that answers at once: decisions only.
    stubs = {name: cast("ProviderAdapter", StubAdapter(name)) for name in PROVIDERS}
    stub = await interleaved(
        {
            "plain": call(p.orchestrator(providers=stubs)),
            "deployed": call(p.deployed(stubs)),
            "deployed_limited": call(
                p.orchestrator(providers=stubs, gate=p.board, limiter=p.limited, bulkheads=True)
            ),
        },
        micro_n,
    )
    out |= {f"stub_{label}": median_us(s) for label, s in stub.items()}

    # Each piece alone.
    bulkhead = p.bulkheads["plaid"]

    async def slot() -> None:
        async with bulkhead.slot():
            pass

    pieces = await interleaved(
        {
            "permit": lambda: p.board.permit("plaid", REGION, "m"),
            "free": lambda: p.free.acquire("plaid", OP),
            "limited": lambda: p.limited.acquire("plaid", OP),
            "bulkhead": slot,
        },
        micro_n,
    )
    out |= {f"piece_{label}": median_us(s) for label, s in pieces.items()}
    three = [link_for(provider, "o") for provider in ("finicity", "mx", "plaid")]
    out["piece_order"] = mean_us(
        lambda: order_links(three, None, DEFAULT_HIERARCHY[REGION]), 20_000
    )

    # Recording: the board folds each finished call into its breaker's window.
    recording = new_board(p.app)
    observed = []
    for i in range(200):
        event = attempt_event("mx", f"r{i}", ok=True)
        started = time.perf_counter()
        await recording.observe(event)
        observed.append(time.perf_counter() - started)
    out["piece_observe"] = median_us(observed[50:])
    for size in (1_000, 10_000):
        out[f"window_{size}"] = window_fold_us(size)
    return out


def window_fold_us(size: int, n: int = 50) -> float:
    """`decide_on_call` on a closed breaker whose window already holds `size` calls
    (the default window is 5 minutes: 1,000 calls is 3.3 calls/s on one breaker)."""
    policy = BreakerPolicy()
    breaker = new_breaker("mx", REGION)
    window = Window()
    now = datetime.now(UTC)

    def call(i: int) -> Observation:
        return Observation(
            notification_id=i,
            command_id=f"w{i}",
            at=now,
            outcome="success",
            error_type=None,
            error_code=None,
            response_time_ms=1.0,
        )

    for i in range(size):
        window.add(call(i), policy, now)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        decide_on_call(breaker, window, call(size + i), policy, now)
        samples.append(time.perf_counter() - started)
    return median_us(samples)


def rows(d: dict[str, float]) -> list[Row]:
    plain = d["http_plain"]
    out = [
        ("(1) provider call, bare HTTP to the sandbox", f"{d['http_bare']:.0f} µs", "baseline"),
        (
            "(1) through `execute_with_failover`, no gate, limiter or bulkhead",
            f"{plain:.0f} µs",
            f"+{plain - d['http_bare']:.0f} µs vs bare ({plain / d['http_bare']:.2f}×)",
        ),
    ]
    for key, label in (
        ("gate", "+ breaker gate (`BreakerBoard.permit`)"),
        ("free", "+ rate limiter, no limit configured"),
        ("bulkhead", "+ bulkhead"),
        ("deployed", "+ all three, as deployed (no limit configured)"),
        ("limited", "+ rate limiter with a limit configured (PostgreSQL)"),
        ("deployed_limited", "+ all three, with a configured limit"),
    ):
        value = d[f"http_{key}"]
        out.append(
            (f"(1) {label}", f"{value:.0f} µs", f"{value - plain:+.0f} µs vs orchestrator alone")
        )
    stub_decisions = d["stub_deployed"] - d["stub_plain"]
    stub_limited = d["stub_deployed_limited"] - d["stub_plain"]
    pieces = ("piece_permit", "piece_free", "piece_bulkhead", "piece_order", "piece_observe")
    return [
        *out,
        (
            "(1') orchestrator with an in-process provider (no I/O): alone / as deployed / "
            "with a configured limit",
            f"{d['stub_plain']:.1f} / {d['stub_deployed']:.1f} / "
            f"{d['stub_deployed_limited']:.1f} µs",
            f"decisions {stub_decisions:.1f} µs, {stub_limited:.0f} µs with a configured limit "
            f"(goal ≤ {GOAL_DECISIONS_US:.0f} µs)",
        ),
        (
            "(1') pieces alone: permit / limiter, none configured / bulkhead slot / "
            "`order_links` (3 links) / recording (`observe`, window ≤ 200 calls)",
            " / ".join(f"{d[k]:.1f}" for k in pieces) + " µs",
            f"sum {sum(d[k] for k in pieces):.1f} µs",
        ),
        (
            "(1') rate limiter with a limit configured, alone",
            f"{d['piece_limited']:.0f} µs",
            "a committed PostgreSQL UPDATE per call, and the pool's reset on release",
        ),
        (
            "(1') recording: one call folded into a closed breaker's window of 1,000 / "
            "10,000 calls",
            f"{d['window_1000']:.0f} / {d['window_10000']:.0f} µs",
            "grows with the window: see notes",
        ),
    ]


def notes(d: dict[str, float]) -> list[str]:
    out = [f"(1): {ROUND_ROBIN}"]
    per_call = (d["window_10000"] - d["window_1000"]) / 9000  # µs per call in the window
    if per_call > 0:
        # The follower folds r calls/s, each costing per_call * r * window_s: it keeps up
        # while r**2 * window_s * per_call < 1 s.
        ceiling = (1e6 / (BreakerPolicy().window_s * per_call)) ** 0.5
        out.append(
            f"recording scans the whole window per call ({per_call:.3f} µs per call held): with "
            f"the default 5-minute window one replica's breaker follower can fold at most "
            f"~{ceiling:,.0f} calls/s per breaker before it falls behind the log."
        )
    return out


async def main(quick: bool) -> None:
    scale = 0.25 if quick else 1.0
    async with alone() as (p, _, _, sandbox_url):
        d = await measure(p, sandbox_url, scale)
    heading = f"syncyard decision overhead benchmark (issue #4): {machine()}, scale {scale}"
    print(render(heading, rows(d), notes(d)))


if __name__ == "__main__":
    run(main, "python -m bench.decisions")
