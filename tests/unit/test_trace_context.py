"""Trace context in stream entries, consumer spans and the sampling rule, with the
SDK's in-memory exporter (no processes, no network)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, StatusCode

from watchllm_shared.contracts.trace_context import (
    current_trace_fields,
    extract_trace_context,
    trace_fields,
)
from watchllm_shared.stream_tracing import MAX_LINKS, batch_spans, message_span
from watchllm_shared.telemetry import SkipUnparentedClientSpans, active_tracer

pytestmark = pytest.mark.unit


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Iterator[trace.Tracer]:
    provider = TracerProvider(sampler=SkipUnparentedClientSpans(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("tests")
    provider.shutdown()


def as_entry(entry_id: bytes, fields: dict[str, str]) -> tuple[bytes, dict[bytes, bytes]]:
    """An entry as redis-py reads it back: bytes keys and values."""
    return entry_id, {k.encode(): v.encode() for k, v in fields.items()}


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def test_a_span_context_survives_the_trip_through_an_entry(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("producer") as span:
        fields = {"data": "{}", **current_trace_fields()}
    assert fields == {"data": "{}", **trace_fields(span)}
    context = extract_trace_context(as_entry(b"1-0", fields)[1])
    assert context is not None
    extracted = trace.get_current_span(context).get_span_context()
    assert (extracted.trace_id, extracted.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )
    assert extracted.is_remote and extracted.trace_flags.sampled


@pytest.mark.parametrize("fields", [
    {"data": "{}"},
    {"data": "{}", "traceparent": ""},
    {"data": "{}", "traceparent": "not a traceparent"},
    {"data": "{}", "traceparent": "00-00000000000000000000000000000000-0000000000000000-01"},
])  # fmt: skip
def test_entries_without_a_readable_context_have_none(fields: dict[str, str]) -> None:
    assert extract_trace_context(as_entry(b"1-0", fields)[1]) is None


def test_nothing_is_written_without_a_span() -> None:
    assert current_trace_fields() == {}
    assert trace_fields(trace.INVALID_SPAN) == {}


def test_no_tracer_without_an_installed_provider() -> None:
    assert active_tracer("tests") is None


def test_client_spans_only_start_no_trace(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("XREADGROUP", kind=SpanKind.CLIENT) as background:
        assert not background.is_recording()
    with tracer.start_as_current_span("request", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            assert call.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["GET", "request"]


def test_a_message_span_continues_the_producers_trace(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("producer") as producer:
        entry = as_entry(b"7-0", {"data": "{}", **current_trace_fields()})
    with message_span(tracer, "cache ask", "asks", "cache", entry):
        pass
    with message_span(tracer, "cache ask", "asks", "cache", as_entry(b"8-0", {"data": "{}"})):
        pass
    continued, fresh = by_name(exporter, "cache ask")
    assert continued.parent is not None
    assert continued.parent.span_id == producer.get_span_context().span_id
    assert continued.kind is SpanKind.CONSUMER
    assert continued.attributes is not None
    assert continued.attributes["messaging.message.id"] == "7-0"
    assert fresh.parent is None  # no context: a trace of its own


def test_a_batch_has_one_span_and_every_entry_one_in_its_own_trace(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    producers: list[trace.SpanContext] = []
    entries = []
    for number in range(3):
        with tracer.start_as_current_span(f"request {number}") as request:
            producers.append(request.get_span_context())
            fields = {"data": "{}", **current_trace_fields()}
            entries.append(as_entry(f"{number}-0".encode(), fields))
    entries.append(as_entry(b"9-0", {"data": "{}"}))  # from a producer that does not trace
    with batch_spans(tracer, "insert", entries, {"db.system.name": "clickhouse"}) as traced:
        traced.set(b"0-0", "watchllm.tokens_charged", 12)
        traced.fail(b"1-0", "refused")
    (batch,) = by_name(exporter, "insert batch")
    singles = by_name(exporter, "insert")
    assert batch.parent is None and len(batch.links) == 3
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 4
    assert len(singles) == 3
    for single, producer in zip(singles, producers, strict=True):
        assert single.context is not None and single.parent is not None
        assert single.context.trace_id == producer.trace_id
        assert single.parent.span_id == producer.span_id
        assert batch.context is not None
        assert [link.context.span_id for link in single.links] == [batch.context.span_id]
        assert (single.start_time, single.end_time) == (batch.start_time, batch.end_time)
    assert singles[0].attributes is not None
    assert singles[0].attributes["watchllm.tokens_charged"] == 12
    assert singles[1].status.status_code is StatusCode.ERROR


def test_a_failed_batch_records_only_the_batch(
    tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("request"):
        entry = as_entry(b"1-0", {"data": "{}", **current_trace_fields()})
    with pytest.raises(ConnectionError), batch_spans(tracer, "charge", [entry], {}):
        raise ConnectionError("Redis went away")
    (batch,) = by_name(exporter, "charge batch")
    assert batch.status.status_code is StatusCode.ERROR
    assert by_name(exporter, "charge") == []


def test_links_are_capped(tracer: trace.Tracer, exporter: InMemorySpanExporter) -> None:
    with tracer.start_as_current_span("request"):
        fields = {"data": "{}", **current_trace_fields()}
    entries = [as_entry(f"{n}-0".encode(), fields) for n in range(MAX_LINKS + 5)]
    with batch_spans(tracer, "insert", entries, {}):
        pass
    (batch,) = by_name(exporter, "insert batch")
    assert len(batch.links) == MAX_LINKS
