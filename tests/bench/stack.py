"""The system under test for the bench: Redis, a migrated database, a key, the fake
provider and one gateway process; everything is torn down when the context exits,
also on Ctrl-C or an error (the events stream and the bench project's limiter keys
are deleted after the gateway stopped).

The limiter's Redis Functions library is loaded (as a running limiter service leaves
it; the loader never downgrades a newer one), so every request takes the production
path: one ``FCALL`` to the limiter before it is forwarded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import redis
import redis.asyncio as aioredis

from tests.support.processes import ServiceProcess, start_fake_provider, start_gateway
from tests.support.servers import fresh_database, provide_postgres, provide_redis
from watchllm_limiter.library import ensure_library
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.contracts.limits import check_keys

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
    limiter_library: int
    redis_url: str = ""

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
        # The non-cached path: every request goes upstream. (A miss with the semantic
        # cache on also pays the cache service's embedding; measured separately.)
        "WATCHLLM_CACHE_ENABLED": "false",
    }


@dataclass(frozen=True)
class BenchKey:
    secret: str
    project_id: uuid.UUID
    key_id: uuid.UUID


async def _create_key(database_url: str) -> BenchKey:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        store = AccountStore(pool, actor="bench")
        await store.create_project("bench", Plan.PRO)
        created = await store.create_key("bench", "bench")
        return BenchKey(created.secret, created.key.project_id, created.key.id)
    finally:
        await pool.close()


async def _load_limiter_library(redis_url: str) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return await ensure_library(client)
    finally:
        await client.aclose()


def _delete_bench_keys(redis_url: str, stream: str, key: BenchKey) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        deleted = client.delete(stream, *check_keys(key.project_id, key.key_id))
        log.info("deleted events stream %s and limiter keys (%s keys)", stream, deleted)
    finally:
        client.close()


def _children() -> set[int]:
    """Pids whose parent is this process (from /proc)."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == me:
            found.add(int(entry.name))
    return found


@contextmanager
def _reap_on_failure() -> Iterator[None]:
    """Kill children started inside the block if it fails (Ctrl-C while a service is
    still starting: ``start_process`` has not returned its handle yet)."""
    before = _children()
    try:
        yield
    except BaseException:
        for pid in _children() - before:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        raise


def _endpoint(url: str, key: str) -> Endpoint:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return Endpoint(parts.hostname, parts.port, key)


@contextmanager
def bench_stack(
    work_dir: Path, gateway_wrapper: Sequence[str] = (), gateway_timeout: float = 30,
    extra_env: Callable[[str], dict[str, str]] | None = None,
) -> Iterator[BenchStack]:  # fmt: skip
    """Start everything; ``ExitStack`` unwinds in reverse order whatever happens.
    ``gateway_wrapper`` runs the gateway under another program (valgrind);
    ``extra_env(fake provider URL)``: gateway settings to add (other routes)."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(provide_redis(work_dir))
        admin_url = stack.enter_context(provide_postgres(work_dir))
        database_url = stack.enter_context(fresh_database(admin_url, "watchllm_bench"))
        migrations.upgrade(database_url)
        key = asyncio.run(_create_key(database_url))
        library = asyncio.run(_load_limiter_library(redis_url))
        log.info("limiter library version %s in Redis", library)
        with _reap_on_failure():
            fake = start_fake_provider(work_dir)
        stack.callback(fake.stop)
        events_stream = f"bench.requests.{uuid.uuid4().hex}"
        stack.callback(_delete_bench_keys, redis_url, events_stream, key)  # after the gateway
        env = gateway_env(fake.url, redis_url, database_url, events_stream)
        env.update(extra_env(fake.url) if extra_env is not None else {})
        with _reap_on_failure():
            gateway = start_gateway(env, work_dir, gateway_wrapper, gateway_timeout)
        stack.callback(gateway.stop)
        log.info("gateway pid %d at %s, fake provider at %s", gateway.process.pid,
                 gateway.url, fake.url)  # fmt: skip
        yield BenchStack(
            fake, gateway, _endpoint(gateway.url, key.secret),
            _endpoint(fake.url, FAKE_PROVIDER_KEY), events_stream, library, redis_url,
        )  # fmt: skip
