"""SIGTERM of a cache service process busy with a backlog of stores: it exits 0 within
seconds and leaves nothing it stored pending.

It used to hang in "Waiting for application shutdown" until killed (Python 3.11's
``wait_for`` inside redis-py lost the cancellation of a busy consumer: see
``watchllm_shared.stopping``), or to stop between a store's write and its XACK.
The service runs against a Redis of its own: its stream names are fixed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import CACHE_KEY_SECRET, free_port, start_cache_service
from tests.support.shutdown import (
    STOP_BOUND_SECONDS,
    entries_read,
    pending_of,
    sigterm,
    wait_until,
)
from watchllm_shared.cli.embedded import EmbeddedRedis
from watchllm_shared.contracts.cache import (
    CACHE_STORE_GROUP,
    CACHE_STORE_STREAM,
    CachedAnswer,
    CacheStore,
)
from watchllm_shared.contracts.cache_keys import exact_cache_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 4_000
STOPS = 2  # each start loads the model; each stop is another chance to hang


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    yield server.start()
    server.stop()


def backlog(client: redis.Redis) -> None:
    """Answers to store: most in the exact layer only, one in ten with a question to index."""
    project = uuid.uuid4()
    pipe = client.pipeline(transaction=False)
    for i in range(BACKLOG):
        question = f"What is the capital of country number {i}?"
        messages = [{"role": "user", "content": question}]
        key = exact_cache_key(
            project,
            "/v1/chat/completions",
            {"model": "m", "messages": messages},
            secret=CACHE_KEY_SECRET,
        )
        answer = CachedAnswer(endpoint="/v1/chat/completions", model="m", body="{}",
                              prompt_tokens=1, completion_tokens=1, cost_usd="0")  # fmt: skip
        semantic = i % 10 == 0
        store = CacheStore(
            request_id=uuid.uuid4().hex, project_id=project, exact_key=key,
            scope="s" if semantic else None, question=question if semantic else None,
            ttl_seconds=600, answer=answer,
        )  # fmt: skip
        pipe.xadd(CACHE_STORE_STREAM, {"data": store.model_dump_json()})
    pipe.execute()


def test_sigterm_stops_a_busy_cache_service_promptly_with_its_work_acknowledged(
    own_redis: str, tmp_path: Path, log_dir: Path
) -> None:
    client = redis.Redis.from_url(own_redis)
    backlog(client)
    for stop in range(STOPS):
        consumer = f"shutdown-{stop}"
        cache = start_cache_service(
            {"REDIS_URL": own_redis, "WATCHLLM_CACHE_CONSUMER_NAME": consumer,
             "WATCHLLM_QDRANT_EDGE_PATH": str(tmp_path / "qdrant")},
            log_dir,
        )  # fmt: skip
        before = entries_read(client, CACHE_STORE_STREAM, CACHE_STORE_GROUP)
        wait_until(lambda: entries_read(client, CACHE_STORE_STREAM, CACHE_STORE_GROUP) > before,  # noqa: B023
                   "the cache service reads the backlog")  # fmt: skip
        stopped = sigterm(cache)
        assert stopped.returncode == 0, (stopped, cache.log()[-3000:])
        assert stopped.seconds < STOP_BOUND_SECONDS
        assert pending_of(client, CACHE_STORE_STREAM, CACHE_STORE_GROUP, consumer) == []
    # It stopped with work left: the backlog was in flight, not finished.
    assert entries_read(client, CACHE_STORE_STREAM, CACHE_STORE_GROUP) < BACKLOG
    client.close()
