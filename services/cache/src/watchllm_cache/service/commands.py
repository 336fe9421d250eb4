"""Flushes and deletions requested by operators (``watchllm cache flush|delete``).

The CLI XADDs a command to ``COMMAND_STREAM``; the cache service, the only writer of
the cache's stores, applies it: a flush deletes a project's exact entries (one SCAN
over its hash tag) and its index points; a deletion removes one entry by its exact
key. Commands are idempotent, acknowledged after they are applied, and retried while
Redis or the index fails.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_shared.contracts.cache import CACHE_COMMAND_STREAM, CacheCommand
from watchllm_shared.contracts.cache_keys import project_cache_pattern
from watchllm_shared.stream_group import consume_forever

log = logging.getLogger(__name__)

_GROUP = "cache"


async def flush_exact(redis: aioredis.Redis, project_id: UUID) -> int:
    deleted = 0
    async for key in redis.scan_iter(match=project_cache_pattern(project_id), count=500):
        deleted += await redis.delete(key)
    return deleted


class CommandConsumer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer

    async def run(self) -> None:
        await consume_forever(self._redis, CACHE_COMMAND_STREAM, _GROUP, self._round,
                              "cache commands")  # fmt: skip

    async def _round(self) -> None:
        # "0" first: commands this consumer read but did not finish.
        for start in ("0", ">"):
            reply: Any = await self._redis.xreadgroup(
                _GROUP, self._consumer, {CACHE_COMMAND_STREAM: start}, count=16,
                block=1000 if start == ">" else None,
            )  # fmt: skip
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    await self._apply(entry_id, fields)

    async def _apply(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        command = CacheCommand.model_validate_json(fields[b"data"])
        if command.op == "flush_project" and command.project_id is not None:
            deleted = await flush_exact(self._redis, command.project_id)
            await self._cache.flush_project(command.project_id)
            log.info("flushed project %s (%d exact entries)", command.project_id, deleted)
        elif command.op == "delete" and command.exact_key is not None:
            await self._redis.delete(command.exact_key)
            await self._cache.delete(command.exact_key)
        self._metrics.commands.labels(command.op).inc()
        await self._redis.xack(CACHE_COMMAND_STREAM, _GROUP, entry_id)
