"""``GET /health`` of a gateway process: the seed's shape and words, and an answer within
its check timeout while a store hangs (every process of an embedded Postgres or Valkey of
the test's own SIGSTOPped, as a frozen VM or a partition would leave it)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import gateway_env
from tests.support.processes import ServiceProcess, free_port, start_gateway
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis
from watchllm_shared.cli.embedded_os import server_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHECK_TIMEOUT = 0.5  # WATCHLLM_HEALTH_CHECK_TIMEOUT_SECONDS of this gateway
STORES = ("database", "redis", "qdrant", "clickhouse")
SERVICES = ("limiter", "cache", "analytics")


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "postgres", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def _health(gateway: ServiceProcess) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    answer = httpx.get(f"{gateway.url}/health", timeout=30)
    return time.monotonic() - started, answer


def test_health_answers_in_the_seeds_shape_and_in_time_while_postgres_hangs(
    postgres: EmbeddedPostgres, fake_provider: ServiceProcess, redis_url: str, log_dir: Path
) -> None:
    env = gateway_env(fake_provider.url, redis_url, postgres.url, f"test.{uuid.uuid4().hex}",
                      WATCHLLM_HEALTH_CHECK_TIMEOUT_SECONDS=str(CHECK_TIMEOUT))  # fmt: skip
    gateway = start_gateway(env, log_dir)
    try:
        _, answer = _health(gateway)
        report = answer.json()
        assert report["mode"] == "self_hosted" and report["status"] in ("healthy", "degraded")
        services = report["services"]
        assert set(services) == {*STORES, *SERVICES}
        assert services["database"] == services["redis"] == "connected"
        # The session's Redis may hold other tests' heartbeats: only the words are known.
        assert {services[s] for s in ("qdrant", "clickhouse")} <= {
            "connected", "disconnected", "unknown",
        }  # fmt: skip
        assert {services[s] for s in SERVICES} <= {"up", "degraded", "down"}

        paused = server_processes("postgres", postgres.pgdata.resolve())
        assert paused, "no Postgres process to pause"
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            # The first check cuts off a query on a pooled connection (asyncpg then
            # cancels it over a new connection to the hung postmaster: 6 s before the
            # fix); the next ones find no connection and open new ones.
            for attempt in range(3):
                took, answer = _health(gateway)
                assert answer.status_code == 503, answer.text
                report = answer.json()
                assert report["status"] == "unhealthy", report
                assert report["services"]["database"] == "disconnected", report
                assert report["services"]["redis"] == "connected", report
                assert took < CHECK_TIMEOUT + 2.0, f"check {attempt} took {took:.1f} s"
            ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["database"] is False
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while _health(gateway)[1].json()["services"]["database"] != "connected":
            assert time.monotonic() < deadline, "the database never came back in /health"
            time.sleep(0.1)
    finally:
        gateway.stop()


def test_health_answers_in_time_while_redis_hangs(
    own_redis: EmbeddedRedis, fake_provider: ServiceProcess, database_url: str, log_dir: Path
) -> None:
    env = gateway_env(fake_provider.url, own_redis.url, database_url, f"test.{uuid.uuid4().hex}",
                      WATCHLLM_HEALTH_CHECK_TIMEOUT_SECONDS=str(CHECK_TIMEOUT))  # fmt: skip
    gateway = start_gateway(env, log_dir)
    try:
        assert _health(gateway)[1].json()["services"]["redis"] == "connected"
        paused = server_processes("valkey-server", own_redis.data_dir.resolve())
        assert paused, "no Valkey process to pause"
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            for attempt in range(3):
                took, answer = _health(gateway)
                report = answer.json()
                assert answer.status_code == 503 and report["status"] == "unhealthy", report
                assert report["services"]["redis"] == "disconnected", report
                assert report["services"]["database"] == "connected", report
                assert took < CHECK_TIMEOUT + 2.0, f"check {attempt} took {took:.1f} s"
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while _health(gateway)[1].json()["services"]["redis"] != "connected":
            assert time.monotonic() < deadline, "Redis never came back in /health"
            time.sleep(0.1)
    finally:
        gateway.stop()
