"""Answering semantic asks: read from the ask stream (consumer group: any number of
replicas share the work), look up, park the embedding for the store, reply on the
asking gateway's channel.

Latency matters here (the gateway waits, ~150 ms deadline): asks are read in small
batches and looked up concurrently; an ask already past its deadline is skipped
(nobody is waiting). Every ask read is acknowledged at once — an unanswered ask is
worthless after its deadline, so there is nothing to redeliver. A failed lookup
replies a miss with the reason, so the gateway stops waiting early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_shared.contracts.cache import (
    LOOKUP_EMBEDDING_TTL_SECONDS,
    SEMANTIC_ASK_GROUP,
    SEMANTIC_ASK_STREAM,
    SemanticAnswer,
    SemanticAsk,
    lookup_embedding_key,
)
from watchllm_shared.stream_group import consume_forever

log = logging.getLogger(__name__)

_BATCH = 16
_BLOCK_MS = 200


class AskServer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer

    async def run(self) -> None:
        await consume_forever(self._redis, SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                              self._serve_batch, "semantic asks")  # fmt: skip

    async def _serve_batch(self) -> None:
        reply: Any = await self._redis.xreadgroup(
            SEMANTIC_ASK_GROUP, self._consumer, {SEMANTIC_ASK_STREAM: ">"}, count=_BATCH,
            block=_BLOCK_MS,
        )  # fmt: skip
        entries = [entry for _, batch in reply or [] for entry in batch]
        if not entries:
            return
        await self._redis.xack(SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                               *[entry_id for entry_id, _ in entries])  # fmt: skip
        await asyncio.gather(*(self._answer(fields) for _, fields in entries))

    async def _answer(self, fields: dict[bytes, bytes]) -> None:
        started = time.perf_counter()
        try:
            ask = SemanticAsk.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError):
            self._metrics.asks.labels("unreadable").inc()
            return
        if time.time() * 1000 > ask.deadline_unix_ms:
            self._metrics.asks.labels("expired").inc()
            return
        try:
            result, embedding = await self._cache.lookup(
                ask.project_id, ask.scope, ask.question, ask.threshold
            )
        except Exception as exc:  # noqa: BLE001 - any lookup failure is a miss, reported
            log.exception("semantic lookup failed")
            self._metrics.errors.labels("lookup").inc()
            refusal = SemanticAnswer(request_id=ask.request_id, hit=False,
                                     reason=f"error: {type(exc).__name__}")  # fmt: skip
            await self._reply(ask, refusal)
            return
        answer = SemanticAnswer(request_id=ask.request_id, hit=result.hit,
                                exact_key=result.exact_key, similarity=result.similarity,
                                reason=result.reason)  # fmt: skip
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(lookup_embedding_key(ask.request_id), embedding.astype("float32").tobytes(),
                     ex=LOOKUP_EMBEDDING_TTL_SECONDS)  # fmt: skip
            pipe.publish(ask.reply_to, answer.model_dump_json())
            await pipe.execute()
        self._metrics.asks.labels("hit" if result.hit else "miss").inc()
        self._metrics.ask_latency.observe(time.perf_counter() - started)

    async def _reply(self, ask: SemanticAsk, answer: SemanticAnswer) -> None:
        await self._redis.publish(ask.reply_to, answer.model_dump_json())
