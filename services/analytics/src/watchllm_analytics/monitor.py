"""Every few seconds: ClickHouse ping, group lag, dead-letter size, heartbeat.

Failures here never stop ingestion: a Redis error is counted and shown in ``/health``
(the heartbeat then expires, and the gateway reports analytics as down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import RedisError

from watchllm_analytics.clickhouse import ping
from watchllm_analytics.dead_letters import DeadLetters
from watchllm_analytics.health import HealthState, publish_heartbeat
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.store import AnalyticsStore
from watchllm_analytics.stream_group import GroupConsumer

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        consumer: GroupConsumer,
        dead_letters: DeadLetters,
        health: HealthState,
        metrics: AnalyticsMetrics,
        interval_seconds: float,
    ) -> None:
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._health = health
        self._metrics = metrics
        self._interval = interval_seconds
        self.store: AnalyticsStore | None = None  # set once the store is open
        self._failing = False
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Refresh until ``stop``. A stop flag rather than task cancellation: a cancel that
        lands inside a Redis call can be absorbed by its socket timeout (Python 3.11)."""
        while not self._stopping.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()

    async def refresh(self) -> None:
        if self.store is not None:
            self._health.clickhouse_reachable = await asyncio.to_thread(
                ping, self.store.query_client
            )
        try:
            await self._refresh_redis()
        except RedisError as exc:
            self._metrics.redis_errors.labels("monitor").inc()
            if not self._failing:
                log.warning("cannot refresh lag or heartbeat: %s", exc)
            self._failing = True
            self._health.redis_up = False
            return
        self._failing = False

    async def _refresh_redis(self) -> None:
        lag = await self._consumer.lag()
        self._health.lag = lag
        if lag.undelivered is not None:
            self._metrics.consumer_lag.set(lag.undelivered)
        self._metrics.pending.set(lag.pending)
        dead = await self._dead_letters.size()
        self._health.dead_letters = dead
        self._metrics.dead_letter_size.set(dead)
        await publish_heartbeat(self._consumer.redis, self._consumer.consumer, self._health)
