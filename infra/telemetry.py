"""OpenTelemetry: spans and metrics recorded and exported over OTLP only when an endpoint is set.

The code creates its spans through the API everywhere. Without an exporter
the API stays no-op (recording spans nobody reads costs ~7 % of a worker's
CPU), yet W3C trace context still flows: a command that arrives with a
`traceparent` header passes it on to its provider calls and its events.
"""

from __future__ import annotations

import logging

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from infra.config import mask_urls

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


METRICS_EXPORT_INTERVAL_MS = 10_000


def setup_metrics(otlp_endpoint: str | None) -> MeterProvider | None:
    """Install an SDK meter provider exporting to `otlp_endpoint` every 10 s, if given.

    Without one, instruments (e.g. `syncyard.projection.lag`) stay no-op. Call
    before the components start: they register their instruments on the
    global provider as they start.
    """
    if not otlp_endpoint:
        return None
    provider = otlp_meter_provider(otlp_endpoint)
    metrics.set_meter_provider(provider)
    log.info("metrics: exporting over OTLP to %s", otlp_endpoint)
    return provider


def otlp_meter_provider(
    otlp_endpoint: str, interval_ms: int = METRICS_EXPORT_INTERVAL_MS
) -> MeterProvider:
    """A meter provider that exports to `otlp_endpoint`/v1/metrics (OTLP/HTTP) periodically."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter,
    )

    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/metrics"),
        export_interval_millis=interval_ms,
    )
    return MeterProvider(
        resource=Resource.create({"service.name": "syncyard"}), metric_readers=[reader]
    )


class TraceIdFilter(logging.Filter):
    """Puts the current trace id on every log record, so a log line leads to its trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = f"{context.trace_id:032x}" if context.is_valid else "-"
        return True


class MaskingFormatter(logging.Formatter):
    """Masks every URL's password in the whole line (message, arguments and traceback):
    a library's log line or exception may quote a URL it was given."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(super().format(record))


def setup_logging(level: int = logging.INFO) -> None:
    """key=value lines with the trace id; the messages themselves never carry secrets."""
    handler = logging.StreamHandler()
    handler.addFilter(TraceIdFilter())
    handler.setFormatter(
        MaskingFormatter(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s trace_id=%(trace_id)s "
            "msg=%(message)r"
        )
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
