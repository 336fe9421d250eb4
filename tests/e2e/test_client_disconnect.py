"""Streams against a slow upstream: relayed as they arrive, and a caller that hangs up
mid-stream makes the gateway stop the upstream and record it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Gateway, gateway_env
from tests.support.events import wait_for_events
from tests.support.processes import start_fake_provider, start_gateway
from watchllm_shared.contracts import RequestStatus

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def slow_stream_gateway(redis_url: str, database_url: str, log_dir: Path) -> Iterator[Gateway]:
    fake = start_fake_provider(log_dir, "--chunk-delay", "0.1")
    stream = f"test.requests.{uuid.uuid4().hex}"
    process = start_gateway(gateway_env(fake.url, redis_url, database_url, stream), log_dir)
    yield Gateway(process, stream, process.url)
    process.stop()
    fake.stop()


def test_hanging_up_mid_stream_is_recorded_as_client_disconnected(
    slow_stream_gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    gateway = slow_stream_gateway
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    headers = {"authorization": f"Bearer {project_key[1]}"}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        request_id = response.headers["x-request-id"]
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.CLIENT_DISCONNECTED and event.stream
    assert event.latency_ms < 2000, "the gateway kept reading a stream nobody wanted"


def test_stream_events_reach_the_caller_as_the_upstream_sends_them(
    slow_stream_gateway: Gateway, project_key: tuple[str, str]
) -> None:
    gateway = slow_stream_gateway
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "y"}]}
    headers = {"authorization": f"Bearer {project_key[1]}"}
    arrivals: list[float] = []
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    # The fake waits 0.1 s between its ~27 events: relayed as they come, the first
    # arrives long before the last, and they keep arriving spread over the stream.
    # Measured between arrivals, not from the start: how long this machine takes to
    # answer at all is not what is asserted (a buffered stream arrives all at once).
    assert len(arrivals) > 20
    assert arrivals[-1] - arrivals[0] > 2.0
    assert arrivals[len(arrivals) // 2] < arrivals[-1] - 0.5
