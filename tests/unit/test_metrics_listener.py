"""The metrics listener every service runs beside its API port: what it serves, what it
refuses, and a service that cannot bind it stops at start naming the variable."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.support.processes import free_port
from watchllm_shared.metrics_listener import (
    MetricsEndpoint,
    MetricsPortInUse,
    start_metrics_listener,
)

pytestmark = pytest.mark.unit


def test_it_serves_the_registry_at_metrics_and_nothing_else() -> None:
    registry = CollectorRegistry()
    Counter("watchllm_test_things", "Things.", registry=registry).inc(3)
    listener = start_metrics_listener(MetricsEndpoint(registry, 0, "X_PORT"), "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{listener.port}"
        answer = httpx.get(f"{base}/metrics")
        assert answer.status_code == 200
        assert "watchllm_test_things_total 3.0" in answer.text
        assert answer.headers["content-type"].startswith("text/plain")
        for path in ("/", "/health", "/v1/queries", "/metrics/x"):
            refused = httpx.get(base + path)
            assert refused.status_code == 404 and "watchllm_" not in refused.text, path
    finally:
        listener.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{listener.port}/metrics")


def test_a_taken_port_names_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = MetricsEndpoint(CollectorRegistry(), port, "WATCHLLM_GATEWAY_METRICS_PORT")
        with pytest.raises(MetricsPortInUse, match="set WATCHLLM_GATEWAY_METRICS_PORT"):
            start_metrics_listener(endpoint, "127.0.0.1")


@pytest.mark.slow
def test_a_service_whose_metrics_port_is_taken_stops_at_start() -> None:
    """Before uvicorn binds the API port and before the lifespan opens any store: exit
    code 3 (a start-up failure, as for the API port), one line naming the variable."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "WATCHLLM_LIMITER_PORT": str(free_port()),
               "WATCHLLM_LIMITER_METRICS_PORT": str(port),
               "REDIS_URL": "redis://127.0.0.1:1/0"}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "watchllm_limiter"], env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in done.stderr
    assert "set WATCHLLM_LIMITER_METRICS_PORT to a free port" in done.stderr
    assert "Traceback" not in done.stderr
