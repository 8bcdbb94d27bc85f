"""`syncyard replay [NAME ...] [--from-zero | --verify]`: read models from the event store.

- no flag: bring the live read models up to the head of the log from their
  stored positions (what a projector does, once, with a progress bar);
- `--from-zero`: rebuild them from the first event in a shadow schema and
  swap the finished tables in, in one transaction (`projections.rebuild`);
- `--verify`: rebuild into shadow tables and print every row that differs
  from the live ones; exit code 1 when any does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from infra.config import Settings
from infra.log_access import open_log
from projections.engine import Projection, apply_next_page, migrate
from projections.rebuild import REPLAY_PAGE_SIZE, rebuild_live
from projections.registry import all_projections
from projections.verify import verify

console = Console(stderr=True)


class UnknownProjectionError(ValueError):
    """A NAME that is not a read model."""


def choose(names: Sequence[str]) -> list[Projection]:
    """The projections named (all when none is), or an error listing the valid names.

    Only read models that declare their `tables` can be rebuilt: the others
    (the deferral timer's table, which the timer also writes) are not replayable.
    """
    known = {p.name: p for p in all_projections() if p.tables}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UnknownProjectionError(
            f"unknown read model {', '.join(map(repr, unknown))}; valid names: "
            + ", ".join(sorted(known))
        )
    return [known[name] for name in dict.fromkeys(names)] if names else list(known.values())


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>10,.0f} events/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        bar.add_task(label, total=None, rate=0.0)
        yield bar


async def run_replay(
    settings: Settings, names: Sequence[str], *, from_zero: bool, check: bool
) -> int:
    projections = choose(names)
    listed = ", ".join(p.name for p in projections)
    started = time.perf_counter()
    async with open_log(settings) as (pool, reader):
        label = projections[0].name if len(projections) == 1 else f"{len(projections)} read models"
        with progress_bar(label) as bar:
            task = bar.task_ids[0]

            def report(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=done, total=total, rate=rate)

            if check:
                differences = await verify(pool, reader, projections, progress=report)
            elif from_zero:
                await rebuild_live(pool, reader, projections, progress=report)
            else:
                await migrate(pool, projections)
                async with pool.acquire() as conn:
                    head = await reader.max_id(conn)
                    while await apply_next_page(
                        conn, reader, projections, page_size=REPLAY_PAGE_SIZE, upto=head
                    ):
                        pass
                    report(head, head)
    seconds = time.perf_counter() - started
    if not check:
        print(f"replayed {listed} in {seconds:.1f} s")
        return 0
    for diff in differences:
        print(f"{diff.projection}.{diff.table}: {diff.side}: {diff.row}")
    print(f"verified {listed} in {seconds:.1f} s: {len(differences)} differences")
    return 1 if differences else 0
