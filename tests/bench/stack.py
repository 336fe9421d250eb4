"""The system under test for the bench: Redis, a migrated database, a key, the fake
provider and one gateway process; everything is torn down when the context exits,
also on Ctrl-C or an error (the events stream is deleted after the gateway stopped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import redis

from tests.support.processes import ServiceProcess, start_fake_provider, start_gateway
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts import migrate as migrations

log = logging.getLogger(__name__)

FAKE_PROVIDER_KEY = "sk-fake-provider-key-bench-0123456789"
MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    key: str


@dataclass(frozen=True)
class BenchStack:
    fake: ServiceProcess
    gateway: ServiceProcess
    gateway_endpoint: Endpoint
    direct_endpoint: Endpoint
    stream: str

    @property
    def gateway_pid(self) -> int:
        return self.gateway.process.pid


def gateway_env(fake_url: str, redis_url: str, database_url: str, stream: str) -> dict[str, str]:
    routes = [
        {"pattern": "gpt-*", "provider": "openai", "base_url": f"{fake_url}/v1",
         "api_key_env": "WATCHLLM_BENCH_FAKE_KEY", "models": [MODEL]},
    ]  # fmt: skip
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "WATCHLLM_ROUTES": json.dumps(routes),
        "WATCHLLM_BENCH_FAKE_KEY": FAKE_PROVIDER_KEY,
        "WATCHLLM_EVENTS_STREAM": stream,
        "WATCHLLM_LOG_LEVEL": "WARNING",
    }


async def _create_key(database_url: str) -> str:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = AccountStore(pool, actor="bench")
        await store.create_project("bench", Plan.PRO)
        created = await store.create_key("bench", "bench")
        return created.secret
    finally:
        await pool.close()


def _delete_stream(redis_url: str, stream: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        deleted = client.delete(stream)
        log.info("deleted events stream %s (%s)", stream, deleted)
    finally:
        client.close()


def _endpoint(url: str, key: str) -> Endpoint:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return Endpoint(parts.hostname, parts.port, key)


@contextmanager
def bench_stack(work_dir: Path) -> Iterator[BenchStack]:
    """Start everything; ``ExitStack`` unwinds in reverse order whatever happens."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(provide_redis(work_dir))
        admin_url = stack.enter_context(provide_postgres(work_dir))
        database_url = stack.enter_context(fresh_database(admin_url, "watchllm_bench"))
        migrations.upgrade(database_url)
        key = asyncio.run(_create_key(database_url))
        fake = start_fake_provider(work_dir)
        stack.callback(fake.stop)
        events_stream = f"bench.requests.{uuid.uuid4().hex}"
        stack.callback(_delete_stream, redis_url, events_stream)  # after the gateway stops
        env = gateway_env(fake.url, redis_url, database_url, events_stream)
        gateway = start_gateway(env, work_dir)
        stack.callback(gateway.stop)
        log.info("gateway pid %d at %s, fake provider at %s", gateway.process.pid,
                 gateway.url, fake.url)  # fmt: skip
        yield BenchStack(
            fake, gateway, _endpoint(gateway.url, key),
            _endpoint(fake.url, FAKE_PROVIDER_KEY), events_stream,
        )  # fmt: skip
