"""services/tracing.py: no span work when nobody could see it; the real span when somebody could."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, ProxyTracerProvider, SpanContext, TraceFlags

from services import tracing

pytestmark = pytest.mark.unit

TRACER = trace.get_tracer("test")
PARENT = SpanContext(
    trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
    span_id=0x00F067AA0BA902B7,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


@pytest.fixture
def no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's own default, whatever an earlier test in this process installed."""
    monkeypatch.setattr(trace, "get_tracer_provider", ProxyTracerProvider)


@pytest.mark.usefixtures("no_exporter")
def test_without_an_exporter_or_a_caller_s_context_no_span_is_made() -> None:
    assert not tracing.exporting()
    with tracing.span(TRACER, "provider.sync.transactions") as span:
        assert span is trace.INVALID_SPAN
        assert not trace.get_current_span().get_span_context().is_valid
    assert not tracing.traced({})
    assert not tracing.traced(None)


def test_a_caller_s_trace_context_is_carried_on_through_the_span() -> None:
    with trace.use_span(NonRecordingSpan(PARENT)), tracing.span(TRACER, "provider.x") as span:
        # The API's own span: it carries the caller's trace to what runs inside it.
        assert span.get_span_context().trace_id == PARENT.trace_id
        assert trace.get_current_span().get_span_context().trace_id == PARENT.trace_id


@pytest.mark.usefixtures("no_exporter")
def test_a_message_with_a_traceparent_is_traced() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tracing.traced({tracing.TRACEPARENT: header})
