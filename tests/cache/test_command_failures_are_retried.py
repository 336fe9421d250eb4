"""A flush or delete command that fails (the index raising, or anything unexpected) is
retried, then dead-lettered, and never stops the command consumer: later commands are
still applied. Real Redis, the real model and qdrant-edge index; the index is wrapped
so that its project deletion fails the first N times."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.processes import CACHE_KEY_SECRET
from watchllm_cache.embedding import DIMENSIONS, Embedder
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.commands import CommandConsumer
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_cache.settings import SemanticSettings
from watchllm_shared.contracts.cache import CacheCommand
from watchllm_shared.contracts.cache_keys import (
    delete_marker_key,
    exact_cache_key,
    flush_marker_key,
    project_of_exact_key,
)
from watchllm_shared.stream_group import dead_letter_stream

pytestmark = pytest.mark.integration


class FailingProjectDeletes:
    """The real index, whose ``delete_project`` raises the first ``failures`` times."""

    def __init__(self, index: EdgeIndex, failures: int) -> None:
        self._index = index
        self.failures = failures
        self.project_deletes = 0

    def delete_project(self, project_id: str) -> None:
        self.project_deletes += 1
        if self.project_deletes <= self.failures:
            raise RuntimeError("qdrant: service unavailable")
        self._index.delete_project(project_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


@pytest.fixture
def stream() -> str:
    return f"test.cache.commands.{uuid.uuid4().hex}"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.05)


async def cached(redis: aioredis.Redis, cache: SemanticCache, question: str) -> str:
    """An exact entry plus its index point, as a store leaves them; the exact key."""
    project = uuid.uuid4()
    messages = [{"role": "user", "content": question}]
    key = exact_cache_key(
        project,
        "/v1/chat/completions",
        {"model": "m", "messages": messages},
        secret=CACHE_KEY_SECRET,
    )
    await redis.set(key, "{}", ex=600)
    await cache.store(project, "s", question, key, 600, None)
    return key


async def point_exists(cache: SemanticCache, key: str, question: str) -> bool:
    project = project_of_exact_key(key)
    assert project is not None
    return (await cache.lookup(project, "s", question, None))[0].hit


async def run_consumer(
    redis: aioredis.Redis, embedder: Embedder, settings: SemanticSettings, tmp_path: Path,
    stream: str, failures: int,
) -> tuple[SemanticCache, FailingProjectDeletes, CacheServiceMetrics, CommandConsumer]:  # fmt: skip
    index = FailingProjectDeletes(EdgeIndex.open(tmp_path / "edge", DIMENSIONS), failures)
    cache = SemanticCache(embedder, index, settings)
    metrics = CacheServiceMetrics()
    consumer = CommandConsumer(redis, cache, metrics, "svc", retry_idle_ms=300,
                               max_deliveries=3, stream=stream)  # fmt: skip
    return cache, index, metrics, consumer


async def test_a_failed_flush_is_retried_and_later_commands_still_apply(
    redis: aioredis.Redis, embedder: Embedder, semantic_settings: SemanticSettings,
    tmp_path: Path, stream: str,
) -> None:  # fmt: skip
    cache, index, metrics, consumer = await run_consumer(
        redis, embedder, semantic_settings, tmp_path, stream, failures=1
    )
    flushed = await cached(redis, cache, "How do I reset my password?")
    deleted = await cached(redis, cache, "What are your opening hours?")
    project = project_of_exact_key(flushed)
    assert project is not None
    task = asyncio.create_task(consumer.run())
    try:
        await send(redis, stream, CacheCommand(op="flush_project", project_id=project))
        await eventually(lambda: _equals(lambda: index.project_deletes, 1))
        await send(redis, stream, CacheCommand(op="delete", exact_key=deleted))
        # The delete after the failed flush is applied: the consumer is still running.
        await eventually(lambda: _not(redis.exists(deleted)))
        assert not await point_exists(cache, deleted, "What are your opening hours?")
        assert not task.done()
        # The flush is retried once idle for retry_idle_ms, and then applied.
        await eventually(lambda: _not(redis.exists(flushed)))
        await eventually(lambda: _pending_is(redis, stream, 0))
        assert index.project_deletes == 2
        assert not await point_exists(cache, flushed, "How do I reset my password?")
        assert metrics.errors.labels("command")._value.get() == 1
        assert metrics.commands.labels("flush_project")._value.get() == 1
        assert await redis.xlen(dead_letter_stream(stream)) == 0
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.delete(stream, flushed, deleted, flush_marker_key(project),
                           delete_marker_key(deleted))  # fmt: skip
        await cache.close()


async def test_a_command_that_keeps_failing_is_dead_lettered_and_the_consumer_goes_on(
    redis: aioredis.Redis, embedder: Embedder, semantic_settings: SemanticSettings,
    tmp_path: Path, stream: str,
) -> None:  # fmt: skip
    cache, index, metrics, consumer = await run_consumer(
        redis, embedder, semantic_settings, tmp_path, stream, failures=1_000
    )
    project = uuid.uuid4()
    deleted = await cached(redis, cache, "Where is my parcel?")
    task = asyncio.create_task(consumer.run())
    dlq = dead_letter_stream(stream)
    try:
        await redis.xadd(stream, {"data": b"{not json"})  # unreadable: parked at once
        await send(redis, stream, CacheCommand(op="flush_project", project_id=project))
        await eventually(lambda: _xlen_is(redis, dlq, 2))
        await eventually(lambda: _pending_is(redis, stream, 0))
        assert index.project_deletes == 3  # max_deliveries attempts, then the DLQ
        entries: Any = await redis.xrange(dlq)
        parked = [fields for _, fields in entries]
        assert parked[0][b"error"].startswith(b"unreadable")
        assert (
            parked[1][b"error"] == b"too many deliveries" and b"flush_project" in parked[1][b"data"]
        )
        assert metrics.dead_letters._value.get() == 2
        await send(redis, stream, CacheCommand(op="delete", exact_key=deleted))
        await eventually(lambda: _not(redis.exists(deleted)))
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.delete(stream, dlq, deleted, flush_marker_key(project),
                           delete_marker_key(deleted))  # fmt: skip
        await cache.close()


async def send(redis: aioredis.Redis, stream: str, command: CacheCommand) -> None:
    await redis.xadd(stream, {"data": command.model_dump_json()})


async def _equals(get: Callable[[], int], value: int) -> bool:
    return get() == value


async def _not(pending: Awaitable[int]) -> bool:
    return not await pending


async def _pending_is(redis: aioredis.Redis, stream: str, count: int) -> bool:
    return int((await redis.xpending(stream, "cache"))["pending"]) == count


async def _xlen_is(redis: aioredis.Redis, stream: str, count: int) -> bool:
    return int(await redis.xlen(stream)) == count
