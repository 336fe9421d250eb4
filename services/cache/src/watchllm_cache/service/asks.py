"""Answering semantic asks: read from the ask stream (consumer group: any number of
replicas share the work), look up, park the embedding for the store, reply on the
asking gateway's channel.

Latency matters here (the gateway waits, ~150 ms deadline): asks are read in small
batches and looked up concurrently; an ask already past its deadline is skipped
(nobody is waiting). Every ask read is acknowledged at once — an unanswered ask is
worthless after its deadline, so there is nothing to redeliver. A failed lookup
replies a miss with the reason, so the gateway stops waiting early.

Tracing (only with a tracer): each ask is a ``cache ask`` span, child of the gateway's
``cache lookup`` span through the ask's ``traceparent`` field; the reply's Redis calls
are its children.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
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
from watchllm_shared.stream_group import Entry, consume_forever
from watchllm_shared.stream_tracing import message_span

log = logging.getLogger(__name__)

_BATCH = 16
_BLOCK_MS = 200


class AskServer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str, tracer: Tracer | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._tracer = tracer
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Answer asks until ``stopping`` is set (the asks in hand are answered first)."""
        await consume_forever(self._redis, SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                              self._serve_batch, "semantic asks", stopping=stopping)  # fmt: skip

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
        await asyncio.gather(*(self._answer(entry) for entry in entries))

    async def _answer(self, entry: Entry) -> None:
        if self._tracer is None:
            await self._serve(entry[1])
            return
        with message_span(self._tracer, "cache ask", SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                          entry) as span:  # fmt: skip
            outcome, answer = await self._serve(entry[1])
            span.set_attribute("watchllm.cache.ask", outcome)
            if answer is not None and answer.similarity is not None:
                span.set_attribute("watchllm.cache.similarity", answer.similarity)
            if answer is not None and answer.reason is not None:
                span.set_attribute("watchllm.cache.reason", answer.reason)

    async def _serve(self, fields: dict[bytes, bytes]) -> tuple[str, SemanticAnswer | None]:
        """Answer one ask; (outcome as counted, the answer sent if any)."""
        started = time.perf_counter()
        try:
            ask = SemanticAsk.model_validate_json(fields[b"data"])
        except (KeyError, ValidationError):
            self._metrics.asks.labels("unreadable").inc()
            return "unreadable", None
        if time.time() * 1000 > ask.deadline_unix_ms:
            self._metrics.asks.labels("expired").inc()
            return "expired", None
        try:
            result, embedding = await self._cache.lookup(
                ask.project_id, ask.scope, ask.question, ask.threshold, ask.min_threshold
            )
        except Exception as exc:  # noqa: BLE001 - any lookup failure is a miss, reported
            log.exception("semantic lookup failed")
            self._metrics.errors.labels("lookup").inc()
            refusal = SemanticAnswer(request_id=ask.request_id, hit=False,
                                     reason=f"error: {type(exc).__name__}")  # fmt: skip
            await self._reply(ask, refusal)
            return "error", refusal
        answer = SemanticAnswer(request_id=ask.request_id, hit=result.hit,
                                exact_key=result.exact_key, similarity=result.similarity,
                                reason=result.reason)  # fmt: skip
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(lookup_embedding_key(ask.request_id), embedding.astype("float32").tobytes(),
                     ex=LOOKUP_EMBEDDING_TTL_SECONDS)  # fmt: skip
            pipe.publish(ask.reply_to, answer.model_dump_json())
            await pipe.execute()
        outcome = "hit" if result.hit else "miss"
        self._metrics.asks.labels(outcome).inc()
        self._metrics.ask_latency.observe(time.perf_counter() - started)
        return outcome, answer

    async def _reply(self, ask: SemanticAsk, answer: SemanticAnswer) -> None:
        await self._redis.publish(ask.reply_to, answer.model_dump_json())
