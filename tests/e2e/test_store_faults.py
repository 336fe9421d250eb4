"""Stores going away under a running gateway: answers keep flowing, no event is lost.

Each test gives the gateway a store of its own (embedded, on a fixed port) so it can
stop and restart it without disturbing the rest of the suite.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.conftest import gateway_env
from tests.support.events import read_events, wait_for_events
from tests.support.processes import ServiceProcess, free_port, start_gateway
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.cli.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _ask(sdk: openai.OpenAI, text: str) -> str:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
    )
    assert raw.status_code == 200
    return raw.headers["x-request-id"]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def test_redis_outage_buffers_events_and_delivers_every_one_after(
    own_redis: EmbeddedRedis,
    fake_provider: ServiceProcess,
    database_url: str,
    project_key: tuple[str, str],
    log_dir: Path,
) -> None:
    stream = f"test.requests.{uuid.uuid4().hex}"
    redis_url = own_redis.url
    gateway = start_gateway(
        gateway_env(fake_provider.url, redis_url, database_url, stream), log_dir
    )
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=project_key[1], max_retries=0)
    try:
        before = [_ask(sdk, f"before {i}") for i in range(3)]
        wait_for_events(redis_url, stream, lambda e: e.request_id in before, count=3)
        own_redis.stop()
        during = [_ask(sdk, f"during {i}") for i in range(10)]
        health = httpx.get(f"{gateway.url}/health").json()
        assert health["status"] == "unhealthy" and health["services"]["redis"] == "disconnected"
        assert httpx.get(f"{gateway.url}/readyz").status_code == 503
        own_redis.start()
        wait_for_events(redis_url, stream, lambda e: e.request_id in during, count=10, timeout=20)
        ids = [e.request_id for e in read_events(redis_url, stream)]
        assert sorted(ids) == sorted(before + during), "lost or duplicated events"
        metrics = httpx.get(str(gateway.metrics_url)).text
        assert "watchllm_event_publish_errors_total" in metrics
        assert "watchllm_events_dropped_total 0.0" in metrics
    finally:
        sdk.close()
        gateway.stop()


async def _prepare_accounts(database_url: str) -> tuple[str, str]:
    await asyncio.to_thread(migrations.upgrade, database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = AccountStore(pool, actor="tests")
        await store.create_project("outage", Plan.PRO)
        seen = await store.create_key("outage", "seen")
        never_seen = await store.create_key("outage", "never-seen")
        return seen.secret, never_seen.secret
    finally:
        await pool.close()


async def test_postgres_outage_keeps_known_keys_working_and_refuses_unknown_ones_with_503(
    tmp_path: Path, fake_provider: ServiceProcess, redis_url: str, log_dir: Path
) -> None:
    postgres = EmbeddedPostgres(tmp_path / "postgres", port=free_port())
    database_url = await asyncio.to_thread(postgres.start)
    seen_key, never_seen_key = await _prepare_accounts(database_url)
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(fake_provider.url, redis_url, database_url, stream)
    gateway = await asyncio.to_thread(start_gateway, env, log_dir)
    seen = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=seen_key, max_retries=0)
    never = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=never_seen_key, max_retries=0)
    message: list[ChatCompletionMessageParam] = [{"role": "user", "content": "still there?"}]
    try:
        await seen.chat.completions.create(model="gpt-4o", messages=message)
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(0.6)  # past the key cache TTL: lookups now hit the dead database
        answer = await seen.chat.completions.create(model="gpt-4o", messages=message)
        assert answer.choices[0].message.content
        with pytest.raises(openai.InternalServerError) as unavailable:
            await never.chat.completions.create(model="gpt-4o", messages=message)
        assert unavailable.value.status_code == 503
        assert unavailable.value.code == "auth_unavailable"
        await asyncio.to_thread(postgres.start)
        recovered = await never.chat.completions.create(model="gpt-4o", messages=message)
        assert recovered.choices[0].message.content
    finally:
        await seen.close()
        await never.close()
        await asyncio.to_thread(gateway.stop)
        await asyncio.to_thread(postgres.stop)
