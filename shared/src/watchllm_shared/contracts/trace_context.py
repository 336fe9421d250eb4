"""W3C trace context inside stream entries: the optional ``traceparent`` field.

Every v1 stream entry that a request produces (``watchllm.requests.completed.v1``,
``watchllm.cache.asks.v1``, ``watchllm.cache.stores.v1``) may carry, next to its
``data`` field, the W3C Trace Context (https://www.w3.org/TR/trace-context/) of the
gateway span that produced it:

- ``traceparent``: ``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``;
- ``tracestate``: only when the producer's trace state is not empty.

Rules (add-only, like every contract here):
- producers write them only when tracing is on; an entry without them is normal, and
  so is one from a producer that predates them;
- consumers that do not trace ignore them; consumers that trace continue the trace
  from them, and treat a missing or unreadable value as "no context" (a new trace),
  never as an error;
- they are transport metadata, like message headers, not part of the ``data``
  document: a consumer reads them without decoding the payload, and the payload's
  schema does not change;
- always W3C, whatever ``OTEL_PROPAGATORS`` says: the format is a contract between
  services, not a per-process choice.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_W3C = TraceContextTextMapPropagator()


def trace_fields(span: trace.Span) -> dict[str, str]:
    """The fields that carry ``span``'s context; empty for a span that is not valid."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def current_trace_fields() -> dict[str, str]:
    """The fields that carry the active span's context (empty when there is none)."""
    return trace_fields(trace.get_current_span())


def extract_trace_context(fields: Mapping[bytes, bytes]) -> Context | None:
    """The producer's context from an entry as read from Redis, or None."""
    raw = fields.get(TRACEPARENT.encode())
    if not raw:
        return None
    carrier = {TRACEPARENT: raw.decode("ascii", "replace")}
    state = fields.get(TRACESTATE.encode())
    if state:
        carrier[TRACESTATE] = state.decode("ascii", "replace")
    context = _W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None
