"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway exports spans over
OTLP/HTTP and the request's event carries the same trace id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import gateway_env
from tests.support.events import wait_for_events
from tests.support.otlp import Collector, collector_running
from tests.support.processes import ServiceProcess, start_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def collector() -> Iterator[Collector]:
    yield from collector_running()


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
        mine = [s for s in collector.spans if s.trace_id == event.trace_id]
        assert {s.service for s in mine} == {"watchllm-gateway"}
        names = " ".join(s.name for s in mine)
        assert "/v1/chat/completions" in names and "POST" in names
        (request,) = [s for s in mine if s.name == "chat gpt-4o-mini"]
        assert request.attributes["watchllm.request_id"] == request_id
    finally:
        gateway.stop()
