"""A trace follows a command across the NATS hop, into the provider call and its events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.bootstrap import Runtime
from tests.support.harness import (
    Client,
    Component,
    client,
    eventually,
    register,
    stream_messages,
    sync,
)

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


async def test_without_an_exporter_a_caller_s_trace_still_reaches_the_events(
    component_env: dict[str, str], nats_url: str
) -> None:
    """A process with no OTLP endpoint makes no spans of its own (services/tracing.py),
    yet passes on the trace context a command came with, and invents none."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    worker = Component("worker,relay", component_env)
    await worker.start()
    try:
        async with client(nats_url) as upstream:
            assert (await upstream.send(register("acct-untraced", "plaid"))).success
            await upstream.publish(sync("acct-untraced", "sync-carried"), headers=headers)
            assert (await upstream.result("sync-carried")).success
            await upstream.publish(sync("acct-untraced", "sync-plain"))
            assert (await upstream.result("sync-plain")).success
            published = await eventually(
                lambda: stream_messages(nats_url),
                lambda msgs: any(b"sync-plain" in m.data for m in msgs),
            )
    finally:
        await worker.stop()

    def completed(command_id: bytes) -> dict[str, str]:
        found = next(m for m in published if command_id in m.data and "SyncCompleted" in m.subject)
        return dict(found.headers or {})

    assert trace_id in completed(b"sync-carried")["traceparent"]
    assert "traceparent" not in completed(b"sync-plain")
