"""OpenTelemetry: tracing always on in-process; exported over OTLP only when configured."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

log = logging.getLogger(__name__)


def setup_tracing(
    otlp_endpoint: str | None, *, extra_exporter: SpanExporter | None = None
) -> TracerProvider:
    """Install a tracer provider; spans leave the process only if an exporter is set.

    W3C trace context (the global default propagator) carries traces across
    NATS hops in message headers.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": "syncyard"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
        )
        log.info("exporting traces over OTLP to %s", otlp_endpoint)
    if extra_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(extra_exporter))
    trace.set_tracer_provider(provider)
    return provider
