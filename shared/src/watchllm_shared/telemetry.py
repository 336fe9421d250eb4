"""Logging and tracing setup, called once from each service's entrypoint.

Logging: one line per record, with a filter that masks anything shaped like a secret
(WatchLLM keys ``lgw_…``, provider keys ``sk-…``/``sk-ant-…``, bearer tokens) in the
message and its arguments, so a key can never reach the logs even by mistake. Bodies
are logged only when the operator sets ``WATCHLLM_LOG_BODIES=true``.

Tracing: a real ``TracerProvider`` exporting over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; otherwise the OpenTelemetry no-op API stays in
place and instrumentation is not installed at all (it costs CPU on the hot path).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_SECRET = re.compile(
    r"(lgw_[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+"
    r"|(sk-(?:ant-)?[A-Za-z0-9]{2})[A-Za-z0-9_\-]{6,}"
    r"|((?i:bearer)\s+)[A-Za-z0-9._\-]{8,}"
)


def redact(text: str) -> str:
    """Mask secrets, keeping a short prefix so operators can tell keys apart."""

    def _mask(match: re.Match[str]) -> str:
        kept = next(group for group in match.groups() if group is not None)
        return f"{kept}…[redacted]"

    return _SECRET.sub(_mask, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(str(record.msg))
        if record.args:
            record.args = tuple(
                redact(a) if isinstance(a, str) else a for a in _as_tuple(record.args)
            )
        return True


def _as_tuple(args: Any) -> tuple[Any, ...]:
    return tuple(args.values()) if isinstance(args, dict) else tuple(args)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request INFO lines from HTTP clients cost CPU on the hot path and say nothing
    # the metrics do not; migrations announce every plugin they load.
    for noisy in ("httpx", "httpcore", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def configure_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider | None:
    """Install a tracer provider exporting to ``otlp_endpoint``; None when tracing is off."""
    if not otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": f"watchllm-{service}"}))
    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint = f"{endpoint}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None when not tracing."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
