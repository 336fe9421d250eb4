"""Asking the cache: the exact layer with one GET, the semantic layer over Redis.

- Exact: ``GET exact_cache_key(...)`` — the cache service wrote the ``CachedAnswer``.
- Semantic (project mode ``semantic``, last message from the user): XADD a
  ``SemanticAsk`` to the cache service's stream and wait for the ``SemanticAnswer`` on
  this replica's own pub/sub channel, matched by request id; on a hit, GET the answer.
- Stores: a ``CacheStore`` onto the store stream, after the answer was sent.

The GETs and the ask's XADD are on the request's path, so they go through
``PackedCommands`` like the limiter's ask (see ``watchllm_shared.redis_packed``); the
reply channel is a redis-py pub/sub connection, read in the background.

Failure modes: every lookup runs under ``cache_timeout_seconds``; a timeout, a Redis
error, a missing or unreadable entry, or a cache service that is down or slow is a
miss (counted in ``watchllm_cache_unavailable_total``), never an error for the caller.
A lost pub/sub connection is reopened in the background; asks made meanwhile time out
as misses. A reply that arrives after its deadline is dropped.

So that a cache service that is down does not cost every request the full deadline,
``_BREAKER_AFTER`` semantic timeouts in a row stop semantic asks for
``_BREAKER_SECONDS``; then exactly one ask probes again while the others still skip
(``_semantic_allowed``), and its answer or timeout ends or renews the pause (the exact
layer is always asked: it is one GET in the gateway's own Redis).

Tracing (only with a tracer): each lookup is a ``cache lookup`` span (outcome, layer,
similarity); a semantic ask carries that span's context in its ``traceparent`` field,
so the cache service's ``cache ask`` span is its child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from opentelemetry.trace import Tracer
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.contracts.cache import (
    SEMANTIC_ASK_MAXLEN,
    SEMANTIC_ASK_STREAM,
    CachedAnswer,
    SemanticAnswer,
    SemanticAsk,
    reply_channel,
)
from watchllm_shared.contracts.trace_context import current_trace_fields
from watchllm_shared.redis_packed import PackedCommands

log = logging.getLogger(__name__)

_BREAKER_AFTER = 3
_BREAKER_SECONDS = 1.0


async def _admitted(admission: asyncio.Future[Any] | None) -> bool:
    """Whether the limiter admitted the request (True when nobody asks it). Shielded:
    the lookup's deadline must not cancel the limiter's ask, which the proxy awaits."""
    if admission is None:
        return True
    try:
        await asyncio.shield(admission)
    except Exception:  # noqa: BLE001 - its 429 or 503 reaches the caller through the proxy
        return False
    return True


@dataclass(frozen=True, slots=True)
class CacheHit:
    answer: CachedAnswer
    similarity: float | None  # None for an exact hit
    key: str  # the exact-layer key of the entry that answered


class CacheClient:
    def __init__(
        self, redis: aioredis.Redis, commands: PackedCommands, metrics: GatewayMetrics,
        instance: str, timeout: float, tracer: Tracer | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis  # the reply channel's pub/sub
        self._commands = commands  # GET and XADD on the request's path
        self._tracer = tracer
        self._metrics = metrics
        self._channel = reply_channel(instance)
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[SemanticAnswer]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._semantic_timeouts = 0
        self._semantic_paused_until = 0.0
        # Since start, for the state report (``state_report``): plain ints, no lock.
        self.semantic_timeouts_total = 0
        self.lookup_failures_total = 0

    @property
    def semantic_breaker_open(self) -> bool:
        """Semantic asks are paused (or down to one probe a second) after timeouts in a
        row; closed again once an ask is answered."""
        return self._semantic_paused_until != 0.0

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="cache-replies")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def lookup(
        self,
        request_id: str,
        project_id: UUID,
        exact_key: str,
        semantic: tuple[str, str] | None,
        threshold: float | None,
        min_threshold: float | None = None,
        admission: asyncio.Future[Any] | None = None,
    ) -> CacheHit | None:
        """The cached answer for this request, or None (a miss, whatever the reason).
        ``admission``: the limiter's answer; the semantic layer is asked only once it
        admitted the request (a refusal raises there), so a refused request's question
        never reaches Redis."""
        bars = (threshold, min_threshold)
        if self._tracer is None:
            return await self._lookup(request_id, project_id, exact_key, semantic, bars, admission)
        with self._tracer.start_as_current_span("cache lookup") as span:
            hit = await self._lookup(request_id, project_id, exact_key, semantic, bars, admission)
            span.set_attribute("watchllm.cache", "miss" if hit is None else "hit")
            if hit is not None:
                span.set_attribute("watchllm.cache.layer",
                                   "exact" if hit.similarity is None else "semantic")  # fmt: skip
                if hit.similarity is not None:
                    span.set_attribute("watchllm.cache.similarity", hit.similarity)
            return hit

    async def _lookup(
        self,
        request_id: str,
        project_id: UUID,
        exact_key: str,
        semantic: tuple[str, str] | None,
        bars: tuple[float | None, float | None],
        admission: asyncio.Future[Any] | None,
    ) -> CacheHit | None:
        started = time.perf_counter()
        asked = False
        try:
            async with asyncio.timeout(self._timeout):
                hit = await self._exact(exact_key)
                if (
                    hit is None and semantic is not None and await _admitted(admission)
                    and self._semantic_allowed()
                ):  # fmt: skip
                    asked = True
                    hit = await self._semantic(request_id, project_id, semantic, bars)
        except (RedisError, OSError, TimeoutError) as exc:
            self._metrics.cache_unavailable.labels(type(exc).__name__).inc()
            self.lookup_failures_total += 1
            if asked and isinstance(exc, TimeoutError):
                self._semantic_answered(False)
            hit = None
        self._metrics.cache_ask.observe(time.perf_counter() - started)
        if hit is None:
            self._metrics.cache_misses.inc()
        else:
            self._metrics.cache_hits.labels("exact" if hit.similarity is None else "semantic").inc()
        return hit

    def _semantic_allowed(self) -> bool:
        """False while paused; when a pause ends, True for exactly one request (the
        probe): the pause moves on until that probe is answered or times out."""
        paused_until = self._semantic_paused_until
        if paused_until == 0.0:
            return True
        now = time.monotonic()
        if now < paused_until:
            return False
        self._semantic_paused_until = now + _BREAKER_SECONDS
        return True

    def _semantic_answered(self, answered: bool) -> None:
        if answered:
            self._semantic_timeouts = 0
            return
        self._semantic_timeouts += 1
        self.semantic_timeouts_total += 1
        if self._semantic_timeouts >= _BREAKER_AFTER:
            if self._semantic_paused_until == 0.0:
                log.warning("semantic cache not answering; asking again every %.0f s",
                            _BREAKER_SECONDS)  # fmt: skip
            self._semantic_paused_until = time.monotonic() + _BREAKER_SECONDS

    async def _exact(self, key: str) -> CacheHit | None:
        answer = await self._read(key)
        return CacheHit(answer, None, key) if answer else None

    async def _read(self, key: str) -> CachedAnswer | None:
        raw = await self._commands.call("GET", key)
        if raw is None:
            return None
        try:
            return CachedAnswer.model_validate_json(raw)
        except ValidationError:
            log.warning("unreadable cache entry %s ignored", key)
            return None

    async def _semantic(
        self,
        request_id: str,
        project_id: UUID,
        semantic: tuple[str, str],
        bars: tuple[float | None, float | None],
    ) -> CacheHit | None:
        scope, question = semantic
        deadline_ms = int((time.time() + self._timeout) * 1000)
        ask = SemanticAsk(request_id=request_id, reply_to=self._channel, project_id=project_id,
                          scope=scope, question=question, threshold=bars[0],
                          min_threshold=bars[1],
                          deadline_unix_ms=deadline_ms)  # fmt: skip
        future: asyncio.Future[SemanticAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            fields = ["data", ask.model_dump_json()]
            if self._tracer is not None:  # the ``cache lookup`` span
                for name, value in current_trace_fields().items():
                    fields += [name, value]
            await self._commands.call(
                "XADD", SEMANTIC_ASK_STREAM, "MAXLEN", "~", SEMANTIC_ASK_MAXLEN, "*", *fields
            )
            answer = await future
        finally:
            self._pending.pop(request_id, None)
        self._semantic_answered(True)
        self._semantic_paused_until = 0.0
        if not answer.hit or answer.exact_key is None:
            return None
        cached = await self._read(answer.exact_key)
        return CacheHit(cached, answer.similarity, answer.exact_key) if cached else None

    async def _listen(self) -> None:
        """Resolve waiting asks from this replica's reply channel; reconnect forever."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                async for message in pubsub.listen():
                    self._resolve(message.get("data"))
            except (RedisError, OSError) as exc:
                log.warning("cache reply channel lost (%s); reconnecting", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _resolve(self, data: object) -> None:
        if not isinstance(data, bytes | str):
            return
        try:
            answer = SemanticAnswer.model_validate_json(data)
        except ValidationError:
            log.warning("unreadable cache reply ignored")
            return
        future = self._pending.get(answer.request_id)
        if future is not None and not future.done():
            future.set_result(answer)
