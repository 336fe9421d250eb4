"""Stopping a gateway process: SIGTERM with Redis gone ends within the shutdown bound
(``WATCHLLM_GATEWAY_SHUTDOWN_SECONDS``, 6 s by default: under a supervisor's 10 s grace),
and every answered request whose event could not be written is logged with its count.

It used to flush its two buffers one after the other, 5 s each, after up to 10 s for
requests in flight: `watchllm up` killed it mid-flush, and the loss was neither logged
nor counted. The gateway gets a Redis of its own, stopped by the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.conftest import gateway_env
from tests.support.events import wait_for_events
from tests.support.processes import ServiceProcess, free_port, start_gateway
from tests.support.shutdown import STOP_BOUND_SECONDS, sigterm
from watchllm_shared.cli.embedded import EmbeddedRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def ask(sdk: openai.OpenAI, text: str) -> str:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    assert raw.status_code == 200
    return raw.headers["x-request-id"]


def test_sigterm_with_redis_gone_stops_in_time_and_logs_every_unwritten_event(
    own_redis: EmbeddedRedis,
    fake_provider: ServiceProcess,
    database_url: str,
    project_key: tuple[str, str],
    log_dir: Path,
) -> None:
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(fake_provider.url, own_redis.url, database_url, stream,
                      WATCHLLM_CACHE_ENABLED="true")  # both publishers  # fmt: skip
    gateway = start_gateway(env, log_dir)
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=project_key[1], max_retries=0)
    try:
        before = [ask(sdk, f"before {i}") for i in range(3)]
        wait_for_events(own_redis.url, stream, lambda e: e.request_id in before, count=3)
        own_redis.stop()  # as `up`'s embedded Valkey did, stopping first
        for i in range(5):
            ask(sdk, f"during {i}")  # answered; their events wait in memory
        stopped = sigterm(gateway)
    finally:
        sdk.close()
        gateway.kill()
    log = gateway.log()
    assert stopped.returncode == 0, (stopped, log[-3000:])
    assert stopped.seconds < STOP_BOUND_SECONDS
    assert f"shutdown: 5 entries not written to {stream} within the 2.0 s flush" in log
    assert "Application shutdown complete" in log
