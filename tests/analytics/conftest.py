"""Analytics test fixtures: real Redis (the session's), real chdb, names unique per test.

chdb hosts one engine per process, at one path at a time, so in-process tests share one
chdb path for the whole session and isolate themselves by database name; the service
started as a subprocess (crash test) gets a path of its own.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from pydantic import SecretStr

from tests.support.processes import SERVICE_SECRETS
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.runtime import AnalyticsService
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_shared.contracts import CacheOutcome, RequestCompleted, RequestStatus
from watchllm_shared.contracts.health import heartbeat_key

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-haiku-4-5")
QUERY_TOKEN = SERVICE_SECRETS["WATCHLLM_ANALYTICS_QUERY_TOKEN"]


def make_event(
    project_id: uuid.UUID | None = None, at: datetime | None = None, **overrides: Any
) -> RequestCompleted:
    """A realistic event; costs have at most 12 decimal places, as stored."""
    rng = random.Random()
    prompt, completion = rng.randint(1, 4000), rng.randint(0, 1500)
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "occurred_at": at or datetime.now(UTC),
        "request_id": uuid.uuid4().hex,
        "project_id": project_id or uuid.uuid4(),
        "key_id": uuid.uuid4(),
        "model": rng.choice(MODELS),
        "provider": "openai",
        "endpoint": "/v1/chat/completions",
        "http_status": 200,
        "status": RequestStatus.OK,
        "cache": rng.choice(list(CacheOutcome)),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": Decimal(prompt) * Decimal("0.00000015") + Decimal(completion) * Decimal("6E-7"),
        "cost_saved_usd": Decimal(rng.randint(0, 999)) / Decimal(10**9),
        "latency_ms": rng.uniform(20, 3000),
        "upstream_latency_ms": rng.uniform(10, 2000),
        "ttfb_ms": rng.uniform(5, 500),
        "trace_id": uuid.uuid4().hex,
    }
    fields.update(overrides)
    return RequestCompleted(**fields)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until ``check()`` is true (or fail after ``within`` seconds)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def publish(client: aioredis.Redis, stream: str, events: list[RequestCompleted]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(stream, event.to_stream_fields())  # type: ignore[arg-type]
        await pipe.execute()


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dsn = f"chdb://{tmp_path_factory.mktemp('chdb')}"
    keeper = clickhouse_connect.get_client(dsn=dsn)  # holds the engine open for the session
    yield dsn
    keeper.close()


@pytest.fixture
def settings(redis_url: str, chdb_dsn: str, tmp_path: Path) -> AnalyticsSettings:
    name = uuid.uuid4().hex[:10]
    return AnalyticsSettings(
        redis_url=redis_url,
        data_dir=tmp_path,
        clickhouse_url=chdb_dsn,
        clickhouse_database=f"test_{name}",
        events_stream=f"test.analytics.{name}",
        bodies_stream=f"test.bodies.{name}",
        analytics_consumer_name="test-consumer",
        analytics_batch_max_rows=500,
        analytics_batch_max_seconds=0.1,
        analytics_reclaim_idle_ms=3_000,
        analytics_max_deliveries=3,
        analytics_monitor_seconds=0.2,
        analytics_shutdown_seconds=3.0,
        analytics_query_token=SecretStr(QUERY_TOKEN),
    )


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def cleanup_stream(
    redis_client: aioredis.Redis, settings: AnalyticsSettings
) -> AsyncIterator[None]:
    yield
    await redis_client.delete(settings.events_stream, f"{settings.events_stream}.dlq",
                              settings.bodies_stream, f"{settings.bodies_stream}.dlq")  # fmt: skip


@dataclass
class RunningService:
    service: AnalyticsService
    failures: list[BaseException]
    stack: AsyncExitStack

    async def stop(self) -> None:
        await self.stack.aclose()


async def start_service(settings: AnalyticsSettings) -> RunningService:
    failures: list[BaseException] = []
    service = AnalyticsService(settings, AnalyticsMetrics(), on_pipeline_failure=failures.append)
    stack = AsyncExitStack()
    await service.start(stack)
    return RunningService(service, failures, stack)


@pytest.fixture
async def running(
    settings: AnalyticsSettings, cleanup_stream: None, redis_client: aioredis.Redis
) -> AsyncIterator[RunningService]:
    running = await start_service(settings)
    yield running
    await running.stop()
    await redis_client.delete(heartbeat_key("analytics"))  # other tests' gateways read it
    assert not running.failures, running.failures


@pytest.fixture
def inspector(chdb_dsn: str, settings: AnalyticsSettings) -> Iterator[Client]:
    """A client on the test's database, for checking what was stored."""
    client = clickhouse_connect.get_client(dsn=chdb_dsn)
    client.command(f"CREATE DATABASE IF NOT EXISTS {settings.clickhouse_database}")
    client.close()
    client = clickhouse_connect.get_client(dsn=chdb_dsn, database=settings.clickhouse_database)
    yield client
    client.close()  # the database stays: the session's chdb folder is temporary


def hours_around(moment: datetime) -> dict[str, str]:
    return {
        "start": (moment - timedelta(hours=1)).isoformat(),
        "end": (moment + timedelta(hours=1)).isoformat(),
    }
