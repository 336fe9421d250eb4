"""A loopback OTLP/HTTP trace receiver: services started with
``OTEL_EXPORTER_OTLP_ENDPOINT=<collector.url>`` export their spans to it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    name: str
    trace_id: str  # 32 hex digits
    span_id: str
    parent_span_id: str  # "" for a root span
    kind: str  # "SERVER", "CLIENT", "CONSUMER", "INTERNAL", "PRODUCER"
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)
    error: bool = False


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _kind(span: ProtoSpan) -> str:
    return str(ProtoSpan.SpanKind.Name(span.kind)).removeprefix("SPAN_KIND_")


class Collector:
    """Keeps every span exported to it, thread-safely."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self.received = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["content-length"]))
                collector._add(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _add(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    received.append(ReceivedSpan(
                        service=str(resource.get("service.name", "")), name=span.name,
                        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(), kind=_kind(span),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=tuple((lk.trace_id.hex(), lk.span_id.hex()) for lk in span.links),
                        error=span.status.code == span.status.STATUS_CODE_ERROR,
                    ))  # fmt: skip
        with self._lock:
            self._spans.extend(received)
        self.received.set()

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """All spans, once ``predicate`` holds for them (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not predicate(spans := self.spans):
            assert time.monotonic() < deadline, f"spans never matched; got {_summary(spans)}"
            time.sleep(0.05)
        return spans

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _summary(spans: list[ReceivedSpan]) -> list[tuple[str, str, str]]:
    return [(s.service, s.name, s.trace_id[:8]) for s in spans]


def collector_running() -> Iterator[Collector]:
    """For fixtures: ``yield from collector_running()``."""
    collector = Collector()
    try:
        yield collector
    finally:
        collector.close()
