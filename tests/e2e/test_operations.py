"""What operators and Kubernetes see: probes, health, metrics, logs free of secrets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.conftest import FAKE_PROVIDER_KEY, Gateway, gateway_env
from tests.support.processes import ServiceProcess, start_gateway

pytestmark = pytest.mark.e2e


def test_probes_and_health_report(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/livez").status_code == 200
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready", "database": True, "redis": True,
    }  # fmt: skip
    health = httpx.get(f"{gateway.url}/health").json()
    assert health["mode"] == "self_hosted"
    assert set(health["services"]) == {
        "database", "redis", "qdrant", "clickhouse", "limiter", "cache", "analytics",
    }  # fmt: skip
    assert health["services"]["database"] == health["services"]["redis"] == "connected"
    # Limiter, cache and analytics are not running in this test: degraded, not unhealthy.
    assert health["status"] == "degraded"


def test_metrics_expose_the_documented_names(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as sdk:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "m"}])
    # Metrics are recorded after the last byte is sent: poll (30 s only bounds a failure).
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(str(gateway.process.metrics_url)).text
        if 'watchllm_requests_total{endpoint="/v1/chat/completions",status="200"}' in text:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.02)
    for name in (
        "watchllm_cache_hits_total", "watchllm_cache_misses_total",
        'watchllm_latency_seconds_bucket{endpoint="/v1/chat/completions",le=',
        "watchllm_events_published_total",
    ):  # fmt: skip
        assert name in text


def test_metrics_are_not_served_on_the_api_port(gateway: Gateway) -> None:
    """The API port faces callers; /metrics has a listener of its own (README, Security),
    which serves nothing else."""
    api = httpx.get(f"{gateway.url}/metrics")
    assert api.status_code == 404 and "watchllm_" not in api.text
    metrics_url = str(gateway.process.metrics_url)
    assert httpx.get(metrics_url).status_code == 200
    listener = metrics_url.removesuffix("/metrics")
    for path in ("/health", "/v1/models", "/"):
        assert httpx.get(listener + path).status_code == 404, path


def test_no_key_ever_reaches_the_logs(gateway: Gateway, project_key: tuple[str, str]) -> None:
    _, key = project_key
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as sdk:
        sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "secret"}]
        )
        with pytest.raises(openai.InternalServerError):
            sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "[[fake:status=401]]"}]
            )
    log = gateway.process.log()
    assert key not in log and FAKE_PROVIDER_KEY not in log and "secret" not in log


def test_unknown_paths_answer_in_openai_shape(gateway: Gateway) -> None:
    response = httpx.get(f"{gateway.url}/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_bodies_are_logged_only_when_the_operator_asks_and_keys_still_never(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    project_key: tuple[str, str],
    log_dir: Path,
) -> None:
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream, WATCHLLM_LOG_BODIES="true"
    )
    gateway = start_gateway(env, log_dir)
    try:
        with openai.OpenAI(
            base_url=f"{gateway.url}/v1", api_key=project_key[1], max_retries=0
        ) as sdk:
            sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "log this body"}]
            )
    finally:
        gateway.stop()
    log = gateway.log()
    assert "log this body" in log and "Echo: log this body" in log
    assert project_key[1] not in log and FAKE_PROVIDER_KEY not in log
