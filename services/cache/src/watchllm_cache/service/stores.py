"""Storing answers: the exact layer in Redis, the question's embedding in the index.

Consumer group on the store stream; a message is acknowledged only after both writes
(or once discarded, below).
The embedding computed at lookup is reused when the gateway's ask parked it (a few
minutes under ``lookup_embedding_key``); otherwise the question is embedded here.

Flushes and deletions win over stores published before them: a flush or a deletion
(``commands``) first records its command's stream id under ``flush_marker_key`` /
``delete_marker_key`` (``discard_queued_stores``; a marker never moves back); a store
whose own stream id is not newer (in ms: two streams number one millisecond
independently, so a store of the command's millisecond counts as before it) is
acknowledged and not written (counted as ``stores{layer="discarded"}``). Both ids come
from Redis's clock: right with the one primary the services use (docs/deployment.md);
after a failover to a primary whose clock is behind, or across Cluster shards, stores
published within that skew of the flush could slip through. The check and the write are
one script on the entry's hash tag, so a store racing the flush is either written before
the marker (and the flush's scan deletes it) or discarded. A point indexed while a flush
ran is removed again when the marker shows up after indexing. Markers expire after
``MARKER_TTL_SECONDS``; a store published longer ago than that is discarded as stale, so
an expired marker lets nothing back.

Failure modes:
- Redis down: nothing acknowledged; back off and resume.
- The index fails: the exact entry is written, the message stays pending and is
  retried after ``reclaim_idle_ms``; after ``max_deliveries`` it goes to
  ``<stream>.dlq`` with its error. An unreadable message goes there at once.
- A question longer than ``MAX_SEMANTIC_QUESTION_CHARS`` (the gateway sends none): the
  exact entry only, never embedded (``stores{layer="question_too_long"}``).
- Entries expire with their TTL in Redis; the index ignores expired points (their
  payload carries the expiry).

Tracing (only with a tracer): each store is a ``cache store`` span in the request's
trace (the store's ``traceparent`` field); its Redis writes are children.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import numpy as np
import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_shared.contracts.cache import (
    CACHE_STORE_GROUP,
    CACHE_STORE_STREAM,
    MAX_SEMANTIC_QUESTION_CHARS,
    CacheStore,
    lookup_embedding_key,
)
from watchllm_shared.contracts.cache_keys import (
    delete_marker_key,
    flush_marker_key,
    project_of_exact_key,
)
from watchllm_shared.stream_group import claim_stale, consume_forever, dead_letter, entry_ms
from watchllm_shared.stream_tracing import message_span

log = logging.getLogger(__name__)

_BATCH = 64
_BLOCK_MS = 1000
MARKER_TTL_SECONDS = 7 * 24 * 3600

# Stream ids are "<ms>-<seq>"; two streams number the same millisecond independently,
# so only the ms compare: a store of the flush's own millisecond counts as before it.
_NEWER_LUA = """
local function newer(id, marker)
  if not marker then return true end
  local ims, mms = string.match(id, '^(%d+)'), string.match(marker, '^(%d+)')
  if not ims or not mms then return true end
  return tonumber(ims) > tonumber(mms)
end
"""
# KEYS: exact key, flush marker, delete marker; ARGV: store id, answer, ttl, max age ms.
# 1 when written; 0 when a flush or deletion marked it (or it is too old): discarded.
_WRITE_UNLESS_DISCARDED = (
    _NEWER_LUA
    + """
local now = redis.call('TIME')
local ms = tonumber(string.match(ARGV[1], '^(%d+)-'))
if ms and ms < tonumber(now[1]) * 1000 - tonumber(ARGV[4]) then return 0 end
if not newer(ARGV[1], redis.call('GET', KEYS[2])) then return 0 end
if not newer(ARGV[1], redis.call('GET', KEYS[3])) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""
)
# KEYS: marker; ARGV: store-stream id, ttl. Never moves a marker back.
_RAISE_MARKER = (
    _NEWER_LUA
    + """
if newer(ARGV[1], redis.call('GET', KEYS[1])) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""
)


async def discard_queued_stores(redis: aioredis.Redis, marker_key: str, up_to: bytes) -> None:
    """Discard every store for the project or key behind ``marker_key`` published on
    the store stream up to stream id ``up_to`` (the flush or deletion command's own id).
    Call before deleting what they would write."""
    await redis.eval(_RAISE_MARKER, 1, marker_key, up_to, MARKER_TTL_SECONDS)


class StoreConsumer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str, reclaim_idle_ms: int, max_deliveries: int, tracer: Tracer | None = None,
        *, stream: str = CACHE_STORE_STREAM,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._stream = stream
        self._tracer = tracer
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._reclaim_idle_ms = reclaim_idle_ms
        self._max_deliveries = max_deliveries
        self._write = redis.register_script(_WRITE_UNLESS_DISCARDED)  # EVALSHA, then EVAL

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Store until ``stopping`` is set; the stores read in the current round are
        written and acknowledged first."""
        await consume_forever(self._redis, self._stream, CACHE_STORE_GROUP, self._round,
                              "cache stores", stopping=stopping)  # fmt: skip

    async def _round(self) -> None:
        await self._reclaim()
        reply: Any = await self._redis.xreadgroup(
            CACHE_STORE_GROUP, self._consumer, {self._stream: ">"}, count=_BATCH,
            block=_BLOCK_MS,
        )  # fmt: skip
        for _, entries in reply or []:
            for entry_id, fields in entries:
                await self._store_one(entry_id, fields)

    async def _store_one(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        if self._tracer is None:
            await self._store(entry_id, fields)
            return
        with message_span(self._tracer, "cache store", self._stream, CACHE_STORE_GROUP,
                          (entry_id, fields)) as span:  # fmt: skip
            span.set_attribute("watchllm.cache.layer", await self._store(entry_id, fields))

    async def _store(self, entry_id: bytes, fields: dict[bytes, bytes]) -> str:
        """Store one answer; the layers written (``exact``, ``semantic``) or the failure."""
        try:
            store = CacheStore.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError) as exc:
            await self._dead_letter(entry_id, fields, f"unreadable: {exc}")
            return "unreadable"
        project = project_of_exact_key(store.exact_key) or store.project_id
        written = await self._write(
            keys=[store.exact_key, flush_marker_key(project), delete_marker_key(store.exact_key)],
            args=[entry_id, store.answer.model_dump_json(), store.ttl_seconds,
                  MARKER_TTL_SECONDS * 1000],
        )  # fmt: skip
        if not written:  # queued before a flush or deletion of it
            self._metrics.stores.labels("discarded").inc()
            await self._redis.xack(self._stream, CACHE_STORE_GROUP, entry_id)
            return "discarded"
        self._metrics.stores.labels("exact").inc()
        semantic = store.scope is not None and store.question is not None
        if semantic and len(store.question or "") > MAX_SEMANTIC_QUESTION_CHARS:
            semantic = False  # the gateway sends none; asks about it are refused too
            self._metrics.stores.labels("question_too_long").inc()
        if semantic and store.scope is not None and store.question is not None:
            embedding = await self._parked_embedding(store.request_id)
            try:
                await self._cache.store(store.project_id, store.scope, store.question,
                                        store.exact_key, store.ttl_seconds, embedding)  # fmt: skip
                if await self._discarded_since(entry_id, project, store.exact_key):
                    await self._cache.delete(store.exact_key)  # a flush ran meanwhile
            except Exception:  # noqa: BLE001 - left pending: retried, then dead-lettered
                log.exception("indexing %s failed; will retry", store.exact_key)
                self._metrics.errors.labels("index").inc()
                return "exact, index failed"
            self._metrics.stores.labels("semantic").inc()
        await self._redis.xack(self._stream, CACHE_STORE_GROUP, entry_id)
        return "exact+semantic" if semantic else "exact"

    async def _discarded_since(self, entry_id: bytes, project: UUID, exact_key: str) -> bool:
        markers: Any = await self._redis.mget(flush_marker_key(project),
                                              delete_marker_key(exact_key))  # fmt: skip
        mine = entry_ms(entry_id)
        return any(m is not None and entry_ms(m) >= mine for m in markers)

    async def _parked_embedding(self, request_id: str) -> np.ndarray | None:
        raw = await self._redis.get(lookup_embedding_key(request_id))
        if not isinstance(raw, bytes):
            return None
        self._metrics.embedding_reused.inc()
        return np.frombuffer(raw, dtype=np.float32)

    async def _reclaim(self) -> None:
        retry, exhausted = await claim_stale(
            self._redis, self._stream, CACHE_STORE_GROUP, self._consumer,
            self._reclaim_idle_ms, self._max_deliveries, _BATCH,
        )  # fmt: skip
        for entry_id, fields in exhausted:
            await self._dead_letter(entry_id, fields, "too many deliveries")
        for entry_id, fields in retry:
            await self._store_one(entry_id, fields)

    async def _dead_letter(self, entry_id: bytes, fields: dict[Any, Any], error: str) -> None:
        await dead_letter(self._redis, self._stream, CACHE_STORE_GROUP,
                          (entry_id, fields), error)  # fmt: skip
        self._metrics.dead_letters.inc()
        log.warning("store %s parked in the DLQ: %s", entry_id, error)
