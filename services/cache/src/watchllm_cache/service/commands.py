"""Flushes and deletions requested by operators (``watchllm cache flush|delete``).

The CLI XADDs a command to ``COMMAND_STREAM``; the cache service, the only writer of
the cache's stores, applies it: a flush deletes a project's exact entries (one SCAN
over its hash tag) and its index points; a deletion removes one entry by its exact
key. Before deleting, both record the command's stream id as the project's or key's
marker (``stores.discard_queued_stores``): stores published on the store stream before
the command are then discarded instead of written, so a backlog of them (the cache
service was down, or behind) cannot bring the entries back afterwards. Stores published
after the command are new answers and are cached as usual.

Commands are idempotent and acknowledged only once applied.

Failure modes:
- Redis down: the command stays pending; ``consume_forever`` backs off and resumes.
- Any other failure of one command (the index raising, a bug): logged and counted
  (``errors{stage="command"}``), the command stays pending and this consumer goes on
  with the next ones; it is claimed again once idle for ``retry_idle_ms`` (also from a
  consumer that died), and after ``max_deliveries`` deliveries it goes to
  ``<stream>.dlq`` with its error. An unreadable command, or one without its project
  or key, goes there at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_cache.service.stores import discard_queued_stores
from watchllm_shared.contracts.cache import CACHE_COMMAND_STREAM, CacheCommand
from watchllm_shared.contracts.cache_keys import (
    delete_marker_key,
    flush_marker_key,
    project_cache_pattern,
)
from watchllm_shared.stream_group import claim_stale, consume_forever, dead_letter

log = logging.getLogger(__name__)

_GROUP = "cache"
_BATCH = 16
_BLOCK_MS = 1000


async def flush_exact(redis: aioredis.Redis, project_id: UUID) -> int:
    deleted = 0
    async for key in redis.scan_iter(match=project_cache_pattern(project_id), count=500):
        deleted += await redis.delete(key)
    return deleted


class CommandConsumer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str, retry_idle_ms: int = 5_000, max_deliveries: int = 5,
        *, stream: str = CACHE_COMMAND_STREAM,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._retry_idle_ms = retry_idle_ms
        self._max_deliveries = max_deliveries
        self._stream = stream

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Apply commands until ``stopping`` is set (after the round in hand)."""
        await consume_forever(self._redis, self._stream, _GROUP, self._round, "cache commands",
                              stopping=stopping)  # fmt: skip

    async def _round(self) -> None:
        await self._retry_failed()
        reply: Any = await self._redis.xreadgroup(
            _GROUP, self._consumer, {self._stream: ">"}, count=_BATCH, block=_BLOCK_MS
        )
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self._handle(entry_id, fields)

    async def _retry_failed(self) -> None:
        """Commands left pending (failed here, or by a consumer that died) for
        ``retry_idle_ms``: once more, or to the DLQ past ``max_deliveries``."""
        retry, exhausted = await claim_stale(
            self._redis, self._stream, _GROUP, self._consumer, self._retry_idle_ms,
            self._max_deliveries, _BATCH,
        )  # fmt: skip
        for entry_id, fields in exhausted:
            await self._dead_letter(entry_id, fields, "too many deliveries")
        for entry_id, fields in retry:
            await self._handle(entry_id, fields)

    async def _handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            command = CacheCommand.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError) as exc:
            await self._dead_letter(entry_id, fields, f"unreadable: {exc}")
            return
        try:
            applied = await self._apply(entry_id, command)
        except (RedisError, OSError):
            raise  # stays pending; consume_forever backs off
        except Exception:  # noqa: BLE001 - stays pending: retried, then dead-lettered
            log.exception("cache command %s (%s) failed; will retry", entry_id, command.op)
            self._metrics.errors.labels("command").inc()
            return
        if not applied:
            await self._dead_letter(entry_id, fields, f"{command.op} without its target")
            return
        self._metrics.commands.labels(command.op).inc()
        await self._redis.xack(self._stream, _GROUP, entry_id)

    async def _apply(self, entry_id: bytes, command: CacheCommand) -> bool:
        if command.op == "flush_project" and command.project_id is not None:
            marker = flush_marker_key(command.project_id)
            await discard_queued_stores(self._redis, marker, entry_id)
            deleted = await flush_exact(self._redis, command.project_id)
            await self._cache.flush_project(command.project_id)
            log.info("flushed project %s (%d exact entries)", command.project_id, deleted)
            return True
        if command.op == "delete" and command.exact_key is not None:
            marker = delete_marker_key(command.exact_key)
            await discard_queued_stores(self._redis, marker, entry_id)
            await self._redis.delete(command.exact_key)
            await self._cache.delete(command.exact_key)
            return True
        return False

    async def _dead_letter(self, entry_id: bytes, fields: dict[Any, Any], error: str) -> None:
        await dead_letter(self._redis, self._stream, _GROUP, (entry_id, fields), error)
        self._metrics.dead_letters.inc()
        log.warning("cache command %s parked in the DLQ: %s", entry_id, error)
