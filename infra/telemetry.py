"""OpenTelemetry: spans recorded and exported over OTLP only when an endpoint is set.

The code creates its spans through the API everywhere. Without an exporter
the API stays no-op (recording spans nobody reads costs ~7 % of a worker's
CPU), yet W3C trace context still flows: a command that arrives with a
`traceparent` header passes it on to its provider calls and its events.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger(__name__)


def setup_tracing(otlp_endpoint: str | None) -> TracerProvider | None:
    """Install an SDK tracer provider exporting to `otlp_endpoint` (OTLP/HTTP), if given."""
    if not otlp_endpoint:
        log.info("tracing: context propagated, spans not exported (no OTEL_EXPORTER_OTLP_ENDPOINT)")
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": "syncyard"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
    )
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans over OTLP to %s", otlp_endpoint)
    return provider


class TraceIdFilter(logging.Filter):
    """Puts the current trace id on every log record, so a log line leads to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = f"{context.trace_id:032x}" if context.is_valid else "-"
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """key=value lines with the trace id; the messages themselves never carry secrets."""
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(
        logging.Formatter(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s trace_id=%(trace_id)s "
            "msg=%(message)r"
        )
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
