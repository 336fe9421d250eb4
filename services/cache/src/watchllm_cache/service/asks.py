"""Answering semantic asks: read from the ask stream (consumer group: any number of
replicas share the work), look up, park the embedding for the store, reply on the
asking gateway's channel.

Latency matters here (the gateway waits, ~150 ms deadline). A reader reads the asks in
small batches and queues them, per project (``FairQueue``); ``workers`` tasks take them
out round-robin across projects and look them up, one each at a time. So one tenant's
burst cannot delay another's asks past the deadline: an ask waits behind at most one
ask of each other project with asks waiting, and a project has at most ``per_project``
asks waiting (a newer one sheds its oldest, answered at once as a miss, ``busy``). An
ask already past its deadline when a worker takes it is skipped (nobody is waiting).

Every ask read is acknowledged at once — an unanswered ask is worthless after its
deadline, so there is nothing to redeliver. A failed lookup replies a miss with the
reason, so the gateway stops waiting early; so does an ask whose question is longer
than ``MAX_SEMANTIC_QUESTION_CHARS`` (never embedded: the gateway sends none, this
guards against one that does).

Stopping: the reader stops between batches; the asks being looked up are answered, the
ones still waiting are answered as misses (``shutting down``).

Tracing (only with a tracer): each ask is a ``cache ask`` span, child of the gateway's
``cache lookup`` span through the ask's ``traceparent`` field; the reply's Redis calls
are its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.fair_queue import FairQueue, QueueClosedError
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_shared.contracts.cache import (
    LOOKUP_EMBEDDING_TTL_SECONDS,
    MAX_SEMANTIC_QUESTION_CHARS,
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


@dataclass(frozen=True, slots=True)
class _Waiting:
    ask: SemanticAsk
    entry: Entry  # for the trace context it carries


class AskServer:
    def __init__(
        self, redis: aioredis.Redis, cache: SemanticCache, metrics: CacheServiceMetrics,
        consumer: str, tracer: Tracer | None = None, *, workers: int = 2,
        per_project: int = 32,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._tracer = tracer
        self._cache = cache
        self._metrics = metrics
        self._consumer = consumer
        self._workers = workers
        self._queue: FairQueue[_Waiting] = FairQueue(per_project)

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        """Answer asks until ``stopping`` is set (the asks being looked up are answered
        first, those still waiting get a miss)."""
        workers = [asyncio.create_task(self._work(), name=f"semantic-ask-{n}")
                   for n in range(self._workers)]  # fmt: skip
        try:
            await consume_forever(self._redis, SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                                  self._read_batch, "semantic asks", stopping=stopping)  # fmt: skip
        finally:
            self._queue.close()
            with contextlib.suppress(RedisError, OSError):
                await self._refuse(self._queue.drain(), "shutting down", "stopped")
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()

    async def _read_batch(self) -> None:
        reply: Any = await self._redis.xreadgroup(
            SEMANTIC_ASK_GROUP, self._consumer, {SEMANTIC_ASK_STREAM: ">"}, count=_BATCH,
            block=_BLOCK_MS,
        )  # fmt: skip
        entries = [entry for _, batch in reply or [] for entry in batch]
        if not entries:
            return
        await self._redis.xack(SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                               *[entry_id for entry_id, _ in entries])  # fmt: skip
        too_long: list[_Waiting] = []
        shed: list[_Waiting] = []
        for entry in entries:
            try:
                ask = SemanticAsk.model_validate_json(entry[1][b"data"])
            except (KeyError, ValidationError):
                self._metrics.asks.labels("unreadable").inc()
                continue
            if len(ask.question) > MAX_SEMANTIC_QUESTION_CHARS:
                too_long.append(_Waiting(ask, entry))
                continue
            oldest = self._queue.put(str(ask.project_id), _Waiting(ask, entry))
            if oldest is not None:
                shed.append(oldest)
        self._metrics.asks_waiting.set(len(self._queue))
        await self._refuse(too_long, "question too long", "too_long")
        await self._refuse(shed, "busy: too many asks of this project waiting", "shed")

    async def _refuse(self, asks: list[_Waiting], reason: str, outcome: str = "shed") -> None:
        """Answer these asks as misses without looking them up (nothing is embedded)."""
        if not asks:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for waiting in asks:
                answer = SemanticAnswer(request_id=waiting.ask.request_id, hit=False,
                                        reason=reason)  # fmt: skip
                pipe.publish(waiting.ask.reply_to, answer.model_dump_json())
            await pipe.execute()
        self._metrics.asks.labels(outcome).inc(len(asks))

    async def _work(self) -> None:
        """Look up the queued asks, one at a time, until the queue is closed and empty."""
        while True:
            try:
                waiting = await self._queue.get()
            except QueueClosedError:
                return
            self._metrics.asks_waiting.set(len(self._queue))
            try:
                await self._answer(waiting)
            except (RedisError, OSError) as exc:  # the gateway's deadline makes it a miss
                log.warning("semantic ask not answered, Redis: %s", exc)

    async def _answer(self, waiting: _Waiting) -> None:
        if self._tracer is None:
            await self._serve(waiting.ask)
            return
        with message_span(self._tracer, "cache ask", SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP,
                          waiting.entry) as span:  # fmt: skip
            outcome, answer = await self._serve(waiting.ask)
            span.set_attribute("watchllm.cache.ask", outcome)
            if answer is not None and answer.similarity is not None:
                span.set_attribute("watchllm.cache.similarity", answer.similarity)
            if answer is not None and answer.reason is not None:
                span.set_attribute("watchllm.cache.reason", answer.reason)

    async def _serve(self, ask: SemanticAsk) -> tuple[str, SemanticAnswer | None]:
        """Answer one ask; (outcome as counted, the answer sent if any)."""
        started = time.perf_counter()
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
