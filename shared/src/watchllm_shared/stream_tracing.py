"""Consumer spans for stream entries, in the trace of the request that produced them.

Used only when tracing is on: consumers hold ``tracer: Tracer | None`` (from
``telemetry.active_tracer``) and skip this module entirely when it is None.

- ``message_span``: an entry handled on its own (cache asks and stores). A CONSUMER
  span whose parent is the entry's ``traceparent`` (``contracts.trace_context``);
  without one, the span starts a trace of its own.
- ``batch_spans``: entries handled together (limiter charges: one pipeline; analytics:
  one insert). One ``<name> batch`` span covers the work, in a trace of its own, linked
  to the entries' contexts (at most ``MAX_LINKS``). When the work succeeded, every
  entry that carried a context gets a ``<name>`` span in *its* trace, with the batch's
  start and end times and a link back to the batch span. So a request's trace shows
  its charge and its insert, and the batch span shows what the batch cost. When the
  work raises, only the batch span (with the exception) is recorded: the entries are
  retried and get their spans then.

Attributes follow the OpenTelemetry messaging conventions (``messaging_attributes``:
``messaging.system`` is ``redis``, the stream is ``messaging.destination.name``); every
entry's span has its entry id as ``messaging.message.id``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, use_span
from opentelemetry.util.types import AttributeValue

from watchllm_shared.contracts.trace_context import extract_trace_context

# The SDK's default link limit (OTEL_SPAN_LINK_COUNT_LIMIT); a batch of 10,000 entries
# would otherwise build 10,000 links only for the SDK to drop all but these.
MAX_LINKS = 128

Entry = tuple[bytes, Mapping[bytes, bytes]]


def messaging_attributes(stream: str, group: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": "redis",
        "messaging.operation.type": "process",
        "messaging.destination.name": stream,
        "messaging.consumer.group.name": group,
    }


@contextmanager
def message_span(
    tracer: Tracer, name: str, stream: str, group: str, entry: Entry
) -> Iterator[Span]:
    """The current span while one entry is handled."""
    entry_id, fields = entry
    attributes = messaging_attributes(stream, group)
    attributes["messaging.message.id"] = entry_id.decode()
    with tracer.start_as_current_span(
        name, extract_trace_context(fields), SpanKind.CONSUMER, attributes
    ) as span:
        yield span


@dataclass(slots=True)
class BatchTrace:
    """What the caller tells about single entries while the batch is handled."""

    span: Span
    attributes: dict[bytes, dict[str, AttributeValue]] = field(default_factory=dict)
    errors: dict[bytes, str] = field(default_factory=dict)

    def set(self, entry_id: bytes, key: str, value: AttributeValue) -> None:
        self.attributes.setdefault(entry_id, {})[key] = value

    def fail(self, entry_id: bytes, description: str) -> None:
        self.errors[entry_id] = description


@contextmanager
def batch_spans(
    tracer: Tracer, name: str, entries: Sequence[Entry], attributes: Mapping[str, AttributeValue]
) -> Iterator[BatchTrace]:
    """``attributes`` go on the batch span and on every entry's span."""
    contexts: list[tuple[bytes, Context]] = []
    for entry_id, fields in entries:
        context = extract_trace_context(fields)
        if context is not None:
            contexts.append((entry_id, context))
    links = [Link(_span_context(context)) for _, context in contexts[:MAX_LINKS]]
    started = time.time_ns()
    span = tracer.start_span(
        f"{name} batch", Context(), SpanKind.CONSUMER,
        {**attributes, "messaging.batch.message_count": len(entries)}, links, started,
    )  # fmt: skip
    try:
        with use_span(span):  # records an exception and marks the span failed
            batch = BatchTrace(span)
            yield batch
    finally:
        ended = time.time_ns()
        span.end(ended)
    back = [Link(span.get_span_context())]
    for entry_id, context in contexts:
        single = {**attributes, "messaging.message.id": entry_id.decode(),
                  **batch.attributes.get(entry_id, {})}  # fmt: skip
        entry_span = tracer.start_span(
            name, context, SpanKind.CONSUMER, single, back, start_time=started
        )
        if entry_id in batch.errors:
            entry_span.set_status(Status(StatusCode.ERROR, batch.errors[entry_id]))
        entry_span.end(ended)


def _span_context(context: Context) -> trace_api.SpanContext:
    return trace_api.get_current_span(context).get_span_context()
