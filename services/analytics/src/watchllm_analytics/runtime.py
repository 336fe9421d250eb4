"""Everything one analytics process holds, started in the app's lifespan, stopped in order.

Start: Redis client; the store (chdb: at once, and a locked path stops the start;
server: retried in the background while ``/readyz`` answers 503); then the ingest
pipeline and the monitor. Stop (SIGTERM, via uvicorn's lifespan shutdown): the
pipeline stops reading, flushes, stores and acks (``pipeline``), then the monitor
stops, then the ClickHouse clients and Redis close. A pipeline that dies of an
unexpected error takes the process down (SIGTERM to itself) rather than idling silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack

from watchllm_analytics.backoff import Backoff
from watchllm_analytics.bodies import BODIES_GROUP, BodyIngest
from watchllm_analytics.clickhouse import ClickHouseUnavailable, redact_dsn
from watchllm_analytics.dead_letters import DeadLetters
from watchllm_analytics.health import HealthState
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.monitor import Monitor
from watchllm_analytics.pipeline import IngestPipeline, PipelineLimits
from watchllm_analytics.queries import QueryRunner
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_analytics.store import AnalyticsStore, open_store
from watchllm_analytics.storing import BatchStorer
from watchllm_analytics.stream_group import GroupConsumer
from watchllm_analytics.writer import RequestLogWriter
from watchllm_shared.redis_io import create_redis

log = logging.getLogger(__name__)


def terminate_process(error: BaseException) -> None:
    log.critical("ingest pipeline failed; stopping the process", exc_info=error)
    os.kill(os.getpid(), signal.SIGTERM)


class AnalyticsService:
    def __init__(
        self,
        settings: AnalyticsSettings,
        metrics: AnalyticsMetrics,
        on_pipeline_failure: Callable[[BaseException], None] = terminate_process,
    ) -> None:
        self.settings = settings
        self._on_pipeline_failure = on_pipeline_failure
        self.metrics = metrics
        self.health = HealthState()
        self.redis = create_redis(settings.redis_url)
        self.consumer = GroupConsumer(
            self.redis, settings.events_stream, settings.analytics_consumer_group,
            settings.analytics_consumer_name, settings.analytics_reclaim_idle_ms,
        )  # fmt: skip
        self.dead_letters = DeadLetters(self.consumer, metrics)
        self.bodies_consumer = GroupConsumer(
            self.redis, settings.bodies_stream, BODIES_GROUP, settings.analytics_consumer_name,
            settings.analytics_reclaim_idle_ms,
        )  # fmt: skip
        self.bodies: BodyIngest | None = None  # once the store is open
        self._bodies_stopping = asyncio.Event()
        self._bodies_task: asyncio.Task[None] | None = None
        self.monitor = Monitor(
            self.consumer, self.dead_letters, self.health, metrics,
            settings.analytics_monitor_seconds,
        )  # fmt: skip
        self.queries: QueryRunner | None = None  # once the store is open
        self._store: AnalyticsStore | None = None
        self._pipeline: IngestPipeline | None = None
        self._ingest_task: asyncio.Task[None] | None = None

    async def start(self, stack: AsyncExitStack) -> None:
        # The pool is passed in explicitly, so aclose() keeps it open unless told.
        stack.push_async_callback(self.redis.aclose, True)
        stack.push_async_callback(self.consumer.aclose)  # its connections, before the pool's
        stack.push_async_callback(self.bodies_consumer.aclose)
        stack.callback(self._close_store)
        try:
            await self._open_store()
        except ClickHouseUnavailable:
            if self.settings.embedded:
                raise
            log.exception("ClickHouse unavailable at start; retrying in the background")
        monitor_task = asyncio.create_task(self.monitor.run(), name="analytics-monitor")
        stack.push_async_callback(self._stop_monitor, monitor_task)
        self._ingest_task = asyncio.create_task(self._ingest(), name="analytics-ingest")
        self._ingest_task.add_done_callback(self._pipeline_ended)
        stack.push_async_callback(self.stop)

    async def stop(self) -> None:
        """Stop reading, store and ack what was read, then return."""
        self._bodies_stopping.set()
        if self._pipeline is not None:
            self._pipeline.stop()
        if self._ingest_task is not None:
            if self._pipeline is None:
                self._ingest_task.cancel()  # still waiting for ClickHouse: nothing read
            await asyncio.wait({self._ingest_task})  # its failure was reported already
        if self._bodies_task is not None:
            await asyncio.wait({self._bodies_task})

    async def _ingest(self) -> None:
        backoff = Backoff(0.5, 10.0)
        while self._store is None:
            await asyncio.sleep(backoff.next())
            with contextlib.suppress(ClickHouseUnavailable):
                await self._open_store()
        self._pipeline = self._build_pipeline(self._store)
        s = self.settings
        self.bodies = BodyIngest(
            self.bodies_consumer, DeadLetters(self.bodies_consumer, self.metrics),
            self._store.bodies_client, s.analytics_retention_days, s.analytics_max_deliveries,
        )  # fmt: skip
        self._bodies_task = asyncio.create_task(self.bodies.run(self._bodies_stopping),
                                                name="analytics-bodies")  # fmt: skip
        self._bodies_task.add_done_callback(self._pipeline_ended)
        await self._pipeline.run()

    async def _open_store(self) -> None:
        store = await asyncio.to_thread(open_store, self.settings)
        self._store = store
        self.monitor.store = store
        self.queries = QueryRunner(
            store.query_client, self.metrics, self.settings.analytics_query_timeout_seconds
        )
        self.health.schema_ready = True
        self.health.clickhouse_reachable = True
        log.info("analytics store open: %s", redact_dsn(self.settings.clickhouse_dsn()))

    def _build_pipeline(self, store: AnalyticsStore) -> IngestPipeline:
        s = self.settings
        reclaim_seconds = s.analytics_reclaim_idle_ms / 1000
        storer = BatchStorer(
            RequestLogWriter(store.writer_client), self.consumer, self.dead_letters,
            self.metrics, self.health, renew_every_seconds=reclaim_seconds / 3,
            shutdown_seconds=s.analytics_shutdown_seconds,
        )  # fmt: skip
        limits = PipelineLimits(
            batch_max_rows=s.analytics_batch_max_rows,
            batch_max_seconds=s.analytics_batch_max_seconds,
            read_count=s.analytics_read_count,
            max_deliveries=s.analytics_max_deliveries,
            reclaim_interval_seconds=max(0.5, reclaim_seconds / 2),
        )
        return IngestPipeline(
            self.consumer, self.dead_letters, storer, self.metrics, self.health, limits
        )

    async def _stop_monitor(self, task: asyncio.Task[None]) -> None:
        self.monitor.stop()
        done, _ = await asyncio.wait({task}, timeout=self.settings.analytics_monitor_seconds + 5)
        if not done:
            log.warning("monitor did not stop in time; cancelling it")
            task.cancel()

    def _pipeline_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            self._on_pipeline_failure(error)

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
