"""Storing answers: the exact layer in Redis, the question's embedding in the index.

Consumer group on the store stream; a message is acknowledged only after both writes.
The embedding computed at lookup is reused when the gateway's ask parked it (a few
minutes under ``lookup_embedding_key``); otherwise the question is embedded here.

Failure modes:
- Redis down: nothing acknowledged; back off and resume.
- The index fails: the exact entry is written, the message stays pending and is
  retried after ``reclaim_idle_ms``; after ``max_deliveries`` it goes to
  ``<stream>.dlq`` with its error. An unreadable message goes there at once.
- Entries expire with their TTL in Redis; the index ignores expired points (their
  payload carries the expiry).

Tracing (only with a tracer): each store is a ``cache store`` span in the request's
trace (the store's ``traceparent`` field); its Redis writes are children.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_shared.contracts.cache import (
    CACHE_STORE_GROUP,
    CACHE_STORE_STREAM,
    CacheStore,
    lookup_embedding_key,
)
from watchllm_shared.stream_group import claim_stale, consume_forever, dead_letter
from watchllm_shared.stream_tracing import message_span

log = logging.getLogger(__name__)

_BATCH = 64
_BLOCK_MS = 1000


class StoreConsumer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str, reclaim_idle_ms: int, max_deliveries: int, tracer: Tracer | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._tracer = tracer
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._reclaim_idle_ms = reclaim_idle_ms
        self._max_deliveries = max_deliveries

    async def run(self) -> None:
        await consume_forever(self._redis, CACHE_STORE_STREAM, CACHE_STORE_GROUP, self._round,
                              "cache stores")  # fmt: skip

    async def _round(self) -> None:
        await self._reclaim()
        reply: Any = await self._redis.xreadgroup(
            CACHE_STORE_GROUP, self._consumer, {CACHE_STORE_STREAM: ">"}, count=_BATCH,
            block=_BLOCK_MS,
        )  # fmt: skip
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self._store_one(entry_id, fields)

    async def _store_one(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if self._tracer is None:
            await self._store(entry_id, fields)
            return
        with message_span(self._tracer, "cache store", CACHE_STORE_STREAM, CACHE_STORE_GROUP,
                          (entry_id, fields)) as span:  # fmt: skip
            span.set_attribute("watchllm.cache.layer", await self._store(entry_id, fields))

    async def _store(self, entry_id: bytes, fields: dict[bytes, bytes]) -> str:
        """Store one answer; the layers written (``exact``, ``semantic``) or the failure."""
        try:
            store = CacheStore.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError) as exc:
            await self._dead_letter(entry_id, fields, f"unreadable: {exc}")
            return "unreadable"
        await self._redis.set(store.exact_key, store.answer.model_dump_json(),
                              ex=store.ttl_seconds)  # fmt: skip
        self._metrics.stores.labels("exact").inc()
        if store.scope is not None and store.question is not None:
            embedding = await self._parked_embedding(store.request_id)
            try:
                await self._cache.store(store.project_id, store.scope, store.question,
                                        store.exact_key, store.ttl_seconds, embedding)  # fmt: skip
            except Exception:  # noqa: BLE001 - left pending: retried, then dead-lettered
                log.exception("indexing %s failed; will retry", store.exact_key)
                self._metrics.errors.labels("index").inc()
                return "exact, index failed"
            self._metrics.stores.labels("semantic").inc()
        await self._redis.xack(CACHE_STORE_STREAM, CACHE_STORE_GROUP, entry_id)
        return "exact" if store.scope is None or store.question is None else "exact+semantic"

    async def _parked_embedding(self, request_id: str) -> np.ndarray | None:
        raw = await self._redis.get(lookup_embedding_key(request_id))
        if not isinstance(raw, bytes):
            return None
        self._metrics.embedding_reused.inc()
        return np.frombuffer(raw, dtype=np.float32)

    async def _reclaim(self) -> None:
        retry, exhausted = await claim_stale(
            self._redis, CACHE_STORE_STREAM, CACHE_STORE_GROUP, self._consumer,
            self._reclaim_idle_ms, self._max_deliveries, _BATCH,
        )  # fmt: skip
        for entry_id, fields in exhausted:
            await self._dead_letter(entry_id, fields, "too many deliveries")
        for entry_id, fields in retry:
            await self._store_one(entry_id, fields)

    async def _dead_letter(self, entry_id: bytes, fields: dict[Any, Any], error: str) -> None:
        await dead_letter(self._redis, CACHE_STORE_STREAM, CACHE_STORE_GROUP,
                          (entry_id, fields), error)  # fmt: skip
        self._metrics.dead_letters.inc()
        log.warning("store %s parked in the DLQ: %s", entry_id, error)
