"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway exports spans over
OTLP/HTTP and the request's event carries the same trace id."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import gateway_env
from tests.support.events import wait_for_events
from tests.support.processes import ServiceProcess, start_gateway

pytestmark = pytest.mark.e2e


class Collector:
    """A loopback OTLP/HTTP receiver keeping every exported span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []  # (service, span name, trace id)
        self.received = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value
                                  for a in resource_spans.resource.attributes}  # fmt: skip
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append(
                                (attributes.get("service.name", ""), span.name,
                                 span.trace_id.hex())
                            )  # fmt: skip
                collector.received.set()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


def test_spans_are_exported_and_the_event_carries_their_trace_id(
    collector: Collector,
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    project_key: tuple[str, str],
    log_dir: Path,
) -> None:
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="100",
    )  # fmt: skip
    gateway = start_gateway(env, log_dir)
    try:
        with openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key=project_key[1], max_retries=0
        ) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "trace me"}]
            )
        request_id = raw.headers["x-request-id"]
        (event,) = wait_for_events(redis_url, stream, lambda e: e.request_id == request_id)
        assert event.trace_id is not None and len(event.trace_id) == 32
        assert collector.received.wait(10), "no spans exported"
        gateway.stop()  # flushes the remaining spans
        mine = [s for s in collector.spans if s[2] == event.trace_id]
        assert {s[0] for s in mine} == {"watchllm-gateway"}
        names = " ".join(s[1] for s in mine)
        assert "/v1/chat/completions" in names and "POST" in names
    finally:
        gateway.stop()
