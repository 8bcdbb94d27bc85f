"""A trace follows a command across the NATS hop, into the provider call and its events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.bootstrap import Runtime
from tests.support.harness import Client, eventually, register, stream_messages, sync

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        # The global provider can be set once per process; this suite sets it here only.
        current = TracerProvider()
        trace.set_tracer_provider(current)
    current.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def test_a_trace_follows_a_command_across_nats_into_the_provider_call_and_its_events(
    spans: InMemorySpanExporter, syncyard: Runtime, upstream: Client, nats_url: str
) -> None:
    assert (await upstream.send(register("acct-trace", "plaid"))).success
    headers: dict[str, str] = {}
    with trace.get_tracer("upstream").start_as_current_span("upstream sends a sync") as origin:
        propagate.inject(headers)
        trace_id = origin.get_span_context().trace_id
    await upstream.publish(sync("acct-trace", "sync-traced"), headers=headers)
    assert (await upstream.result("sync-traced")).success

    in_trace = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_name = {s.name: s for s in in_trace}
    command = by_name["command sync.transactions"]
    call = by_name["provider.sync.transactions"]
    assert (
        command.parent is not None and command.parent.span_id == origin.get_span_context().span_id
    )
    assert call.parent is not None and call.parent.span_id == command.context.span_id
    assert call.attributes is not None and call.attributes["syncyard.provider"] == "plaid"
    for span in in_trace:
        assert "access-sandbox" not in str(span.attributes)

    published = await eventually(
        lambda: stream_messages(nats_url), lambda msgs: any(b"sync-traced" in m.data for m in msgs)
    )
    completed = next(
        m for m in published if b"sync-traced" in m.data and "SyncCompleted" in m.subject
    )
    assert f"{trace_id:032x}" in completed.headers["traceparent"]
