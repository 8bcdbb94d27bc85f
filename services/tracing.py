"""Spans only where somebody can see them: an exporter is installed, or the caller traces.

Without an SDK tracer provider (no OTLP endpoint, infra/telemetry.py) the API's
spans are no-ops, yet making, entering and leaving them, and propagating their
context, cost about a tenth of a worker's CPU per command (issue #13,
docs/BENCHMARKS.md). When nothing would be exported and no trace context came
in, `span` skips all of it; with either, it is the API's own span, so a caller's
`traceparent` still reaches the provider calls and the events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, Span, Tracer

TRACEPARENT = "traceparent"


def exporting() -> bool:
    """Whether an SDK tracer provider is installed (the API's default proxy is not one)."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def traced(headers: Mapping[str, str] | None) -> bool:
    """Whether a message with these headers carries trace context, or spans are exported."""
    return exporting() or bool(headers and TRACEPARENT in headers)


@contextlib.contextmanager
def span(tracer: Tracer, name: str, **options: Any) -> Iterator[Span]:
    """`tracer.start_as_current_span(name, …)`, or nothing when no span could be seen:
    nothing exported and no valid span current."""
    if not exporting() and not trace.get_current_span().get_span_context().is_valid:
        yield trace.INVALID_SPAN
        return
    with tracer.start_as_current_span(name, **options) as current:
        yield current
