"""Logging and tracing setup, called once from each service's entrypoint.

Logging: one line per record, with a filter that masks anything shaped like a secret
(WatchLLM keys ``lgw_…``, provider keys ``sk-…``/``sk-ant-…``, bearer tokens) in the
message and its arguments, so a key can never reach the logs even by mistake. Every
argument is looked at, not only strings (issue 22, finding 10): bytes (request and
response bodies, logged only when the operator sets ``WATCHLLM_LOG_BODIES=true``) are
decoded as UTF-8 and logged as text; any other object is masked through its ``str()``
when that holds a secret (numbers stay numbers, for ``%d``); the traceback and stack
of a record are masked too.

Tracing: a real ``TracerProvider`` exporting over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not ``true``); otherwise the OpenTelemetry no-op API stays in
place, instrumentation is not installed at all and ``active_tracer`` is None, so the
services' own span code is skipped (tracing costs CPU on the hot path). The SDK reads
the other standard variables itself: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (over the default ``service.name`` ``watchllm-<service>``),
``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_EXPORTER_OTLP_[TRACES_]HEADERS``/``TIMEOUT``/
``COMPRESSION``/``CERTIFICATE``, ``OTEL_BSP_*``, ``OTEL_SPAN_*_LIMIT``.

One rule is added to the configured sampler: a Redis or Postgres call (a CLIENT span)
made outside any request or message is not sampled. Those are the consumers' blocking
reads, heartbeats, limit syncs and the batched event writes: without the rule each
would start a trace of its own several times a second per process.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from watchllm_shared.settings import WatchLLMSettings

# What every service passes to the FastAPI instrumentation: no spans for probes and
# scrapes, and none per ASGI receive/send message (one per SSE event on a stream).
HTTP_SERVER_OPTIONS: dict[str, Any] = {
    "excluded_urls": "livez,readyz,metrics",
    "exclude_spans": ["receive", "send"],
}

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
        args = record.args
        if isinstance(args, Mapping):  # ``log.info("%(name)s", {...})``: keep the mapping
            record.args = {name: _redact_arg(value) for name, value in args.items()}
        elif args:
            record.args = tuple(_redact_arg(a) for a in args)
        if record.exc_info and not record.exc_text:  # what the formatter would print
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, bytes | bytearray | memoryview):
        return redact(bytes(arg).decode("utf-8", "backslashreplace"))
    if arg is None or isinstance(arg, int | float):
        return arg
    text = str(arg)
    masked = redact(text)
    return arg if masked == text else masked


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


def configure_tracing(service: str, settings: WatchLLMSettings) -> TracerProvider | None:
    """Install the global tracer provider; None (nothing installed) when tracing is off."""
    if not settings.tracing_enabled:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Ours is the default; OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME override it.
    resource = Resource.create({"service.name": f"watchllm-{service}"}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.sampler = SkipUnparentedClientSpans(provider.sampler)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


class SkipUnparentedClientSpans(Sampler):
    """Drops CLIENT spans that would start a trace (background Redis/Postgres calls);
    everything else is decided by the configured sampler."""

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            parent = trace.get_current_span(parent_context).get_span_context()
            if not parent.is_valid:
                return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"SkipUnparentedClientSpans{{{self._delegate.get_description()}}}"


def active_tracer(name: str) -> trace.Tracer | None:
    """A tracer when ``configure_tracing`` installed a provider in this process, else
    None: code that makes its own spans checks for None and does nothing when off."""
    provider = trace.get_tracer_provider()
    return provider.get_tracer(name) if isinstance(provider, TracerProvider) else None


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, or None when not tracing."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
