"""Publishes what this replica sees of the cache, the limiter and Redis, for the Health page.

Every ``state_report_seconds`` (5 s by default) one background task reads the plain
counters and states the parts keep (``CacheClient``, ``RateLimiter``,
``StreamPublisher``: an integer increment each, nothing else on the request path) and
writes one ``GatewayState`` (``watchllm_shared.contracts.gateway_state``): one pipelined
round trip to Redis, off the request path. ``recent`` is the difference between now and
the sample taken ``RECENT_WINDOW_SECONDS`` ago (the samples of the last window are kept:
60 at the default interval), so the page shows what happens now, not since start.

Failure modes: Redis down or slow: the write gives up after ``_WRITE_TIMEOUT_SECONDS``,
is logged once per outage and tried again at the next tick; the replica's state expires
meanwhile, and the page says it has no report from it. Stopping: the state is withdrawn,
so the page does not show a replica that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from watchllm_gateway.cache_client import CacheClient
from watchllm_gateway.events import StreamPublisher
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_shared.contracts.gateway_state import (
    RECENT_WINDOW_SECONDS,
    GatewayCounts,
    GatewayState,
    publish_gateway_state,
    withdraw_gateway_state,
)

log = logging.getLogger(__name__)

_WRITE_TIMEOUT_SECONDS = 1.0


class StateReporter:
    def __init__(
        self,
        redis: aioredis.Redis,
        instance: str,
        every_seconds: float,
        events: StreamPublisher,
        limiter: RateLimiter | None,
        cache: tuple[CacheClient, StreamPublisher] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._instance = instance
        self._every = every_seconds
        self._events = events
        self._limiter = limiter
        self._cache = cache
        self._clock = clock
        self._started_at = datetime.now(UTC)
        # (when, counts) of the last window, oldest first; the first is the start (zeros).
        self._samples: deque[tuple[float, GatewayCounts]] = deque([(clock(), GatewayCounts())])
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-report")

    async def close(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(_WRITE_TIMEOUT_SECONDS):
                await withdraw_gateway_state(self._redis, self._instance)

    async def _run(self) -> None:
        while True:
            await self.publish()
            await asyncio.sleep(self._every)

    async def publish(self) -> None:
        state = self.state()
        try:
            async with asyncio.timeout(_WRITE_TIMEOUT_SECONDS):
                await publish_gateway_state(self._redis, state)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("cannot publish the gateway state report (%s: %s); retrying",
                            type(exc).__name__, exc)  # fmt: skip
            self._failing = True
            return
        self._failing = False

    def state(self) -> GatewayState:
        """This replica's state now; takes a sample for the window."""
        now = self._clock()
        totals = self._counts()
        while len(self._samples) > 1 and self._samples[1][0] <= now - RECENT_WINDOW_SECONDS:
            self._samples.popleft()  # the oldest kept is the last one at or before the window
        recent = totals.minus(self._samples[0][1])
        self._samples.append((now, totals))
        client, stores = self._cache if self._cache is not None else (None, None)
        return GatewayState(
            instance=self._instance,
            at=datetime.now(UTC),
            started_at=self._started_at,
            totals=totals,
            recent=recent,
            semantic_breaker=None if client is None
            else "open" if client.semantic_breaker_open else "closed",
            limiter_failing=self._limiter is not None and self._limiter.failing,
            events_buffered=self._events.buffered,
            cache_stores_buffered=stores.buffered if stores is not None else 0,
            events_write_error=self._events.write_error,
        )  # fmt: skip

    def _counts(self) -> GatewayCounts:
        client, stores = self._cache if self._cache is not None else (None, None)
        applied = self._limiter.policy_applied if self._limiter is not None else {}
        return GatewayCounts(
            semantic_timeouts=client.semantic_timeouts_total if client else 0,
            cache_lookup_failures=client.lookup_failures_total if client else 0,
            limiter_failed_open=applied.get("open", 0),
            limiter_failed_closed=applied.get("closed", 0),
            events_dropped=self._events.dropped,
            cache_stores_dropped=stores.dropped if stores is not None else 0,
        )
