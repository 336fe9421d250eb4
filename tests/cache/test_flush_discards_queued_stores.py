"""A flush or a deletion wins over the stores queued before it: with real Redis, the real
store and command consumers and the real model and qdrant-edge index, answers published
on the store stream before ``cache flush`` / ``cache delete`` never come back, in the
exact layer or the semantic one; answers published afterwards are cached as usual."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
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
from watchllm_cache.service.stores import StoreConsumer
from watchllm_cache.settings import SemanticSettings
from watchllm_shared.contracts.cache import (
    CACHE_STORE_GROUP,
    CacheCommand,
    CachedAnswer,
    CacheStore,
)
from watchllm_shared.contracts.cache_keys import (
    delete_marker_key,
    exact_cache_key,
    flush_marker_key,
    project_cache_pattern,
)

pytestmark = pytest.mark.integration


class Streams:
    def __init__(self, redis: aioredis.Redis) -> None:
        tag = uuid.uuid4().hex
        self.redis = redis
        self.stores = f"test.cache.stores.{tag}"
        self.commands = f"test.cache.commands.{tag}"

    async def store(self, project: uuid.UUID, question: str, body: str = "{}") -> str:
        messages = [{"role": "user", "content": question}]
        key = exact_cache_key(
            project,
            "/v1/chat/completions",
            {"model": "m", "messages": messages},
            secret=CACHE_KEY_SECRET,
        )
        answer = CachedAnswer(endpoint="/v1/chat/completions", model="m", body=body,
                              prompt_tokens=1, completion_tokens=1, cost_usd="0")  # fmt: skip
        store = CacheStore(request_id=uuid.uuid4().hex, project_id=project, exact_key=key,
                           scope="s", question=question, ttl_seconds=600,
                           answer=answer)  # fmt: skip
        await self.redis.xadd(self.stores, {"data": store.model_dump_json()})
        return key

    async def command(self, command: CacheCommand) -> None:
        await self.redis.xadd(self.commands, {"data": command.model_dump_json()})

    async def drained(self, stream: str, group: str = CACHE_STORE_GROUP) -> None:
        """Every entry of ``stream`` read by the group and acknowledged."""
        deadline = time.monotonic() + 30
        newest: Any = await self.redis.xrevrange(stream, count=1)
        last = newest[0][0]
        while True:
            groups = {g["name"]: g for g in await self.redis.xinfo_groups(stream)}
            g = groups.get(group.encode())
            if g and g["pending"] == 0 and g["last-delivered-id"] == last:
                return
            assert time.monotonic() < deadline, f"{stream} not drained: {g}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def streams(redis: aioredis.Redis) -> AsyncIterator[Streams]:
    s = Streams(redis)
    yield s
    await redis.delete(s.stores, s.commands)


@pytest.fixture
async def cache(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> AsyncIterator[SemanticCache]:
    cache = SemanticCache(
        embedder, EdgeIndex.open(tmp_path / "edge", DIMENSIONS), semantic_settings
    )
    yield cache
    await cache.close()


def consumers(
    redis: aioredis.Redis, cache: SemanticCache, s: Streams
) -> tuple[StoreConsumer, CommandConsumer]:
    metrics = CacheServiceMetrics()
    return (
        StoreConsumer(redis, cache, metrics, "svc", 30_000, 5, stream=s.stores),
        CommandConsumer(redis, cache, metrics, "svc", stream=s.commands),
    )


class Running:
    """Consumer loops a test starts; ``stop`` cancels every one of them."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, consumer: StoreConsumer | CommandConsumer) -> None:
        self._tasks.append(asyncio.create_task(consumer.run()))

    def all_alive(self) -> bool:
        return not any(task.done() for task in self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def project_keys(redis: aioredis.Redis, project: uuid.UUID) -> set[bytes]:
    return {k async for k in redis.scan_iter(match=project_cache_pattern(project), count=1000)}


async def semantic_hit(cache: SemanticCache, project: uuid.UUID, question: str) -> bool:
    return (await cache.lookup(project, "s", question, None))[0].hit


async def cleanup(redis: aioredis.Redis, *projects: uuid.UUID) -> None:
    for project in projects:
        keys = await project_keys(redis, project)
        await redis.delete(flush_marker_key(project), *keys)


async def test_stores_queued_before_a_flush_are_not_written_after_it(
    redis: aioredis.Redis, streams: Streams, cache: SemanticCache
) -> None:
    """The reviewer's case: the cache service was down, answers queued, the operator
    flushed; on restart the flush is applied first, then the backlog is read."""
    project = uuid.uuid4()
    for i in range(100):
        await streams.store(project, f"What is fact number {i} about owls?")
    await streams.command(CacheCommand(op="flush_project", project_id=project))
    await asyncio.sleep(0.005)  # the flush's own millisecond counts as before it
    fresh = await streams.store(project, "Why do cats purr?")  # an answer after the flush
    store_consumer, command_consumer = consumers(redis, cache, streams)
    running = Running()
    try:
        running.start(command_consumer)
        await streams.drained(streams.commands, "cache")
        running.start(store_consumer)
        await streams.drained(streams.stores)
        assert await project_keys(redis, project) == {fresh.encode()}
        assert not await semantic_hit(cache, project, "What is fact number 7 about owls?")
        assert await semantic_hit(cache, project, "Why do cats purr?")
        assert running.all_alive()
    finally:
        await running.stop()
        await cleanup(redis, project)


async def test_a_flush_during_a_backlog_leaves_nothing_queued_before_it(
    redis: aioredis.Redis, streams: Streams, cache: SemanticCache
) -> None:
    """Both consumers running at once: stores written before the flush is applied are
    deleted by it, the rest are discarded; another project is untouched."""
    project, other = uuid.uuid4(), uuid.uuid4()
    for i in range(150):
        await streams.store(project, f"Question {i} about the weather in Lisbon?")
    kept = await streams.store(other, "A question of another project?")
    store_consumer, command_consumer = consumers(redis, cache, streams)
    running = Running()
    try:
        running.start(store_consumer)
        deadline = time.monotonic() + 30  # until the store consumer has written some
        while not await project_keys(redis, project):
            assert time.monotonic() < deadline and running.all_alive(), "nothing stored"
            await asyncio.sleep(0.01)
        await streams.command(CacheCommand(op="flush_project", project_id=project))
        running.start(command_consumer)
        await streams.drained(streams.commands, "cache")
        await streams.drained(streams.stores)
        assert await project_keys(redis, project) == set()
        assert await project_keys(redis, other) == {kept.encode()}
        assert not await semantic_hit(cache, project, "Question 149 about the weather in Lisbon?")
    finally:
        await running.stop()
        await cleanup(redis, project, other)


async def test_a_store_queued_before_a_delete_does_not_bring_the_entry_back(
    redis: aioredis.Redis, streams: Streams, cache: SemanticCache
) -> None:
    project = uuid.uuid4()
    deleted = await streams.store(project, "Is this answer wrong?", '{"bad": true}')
    await streams.command(CacheCommand(op="delete", exact_key=deleted))
    kept = await streams.store(project, "Is this other answer fine?")
    store_consumer, command_consumer = consumers(redis, cache, streams)
    running = Running()
    try:
        running.start(command_consumer)
        await streams.drained(streams.commands, "cache")
        running.start(store_consumer)
        await streams.drained(streams.stores)
        assert await project_keys(redis, project) == {kept.encode()}
        assert not await semantic_hit(cache, project, "Is this answer wrong?")
        # A store published after the deletion caches the key again.
        await asyncio.sleep(0.005)
        await streams.store(project, "Is this answer wrong?", '{"fixed": true}')
        await streams.drained(streams.stores)
        assert await redis.get(deleted) is not None
    finally:
        await running.stop()
        await redis.delete(delete_marker_key(deleted))
        await cleanup(redis, project)
