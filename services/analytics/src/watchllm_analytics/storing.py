"""The write side of the pipeline: store a batch, park what ClickHouse refuses, then ack.

Acknowledgement comes only after the insert succeeded (at-least-once); the writer's
duplicate check makes the redelivery of an inserted-but-unacked batch harmless.

Failure modes:
- ClickHouse unavailable: the same batch is retried with capped backoff; nothing is
  acknowledged, nothing more is read once the hand-over queue is full (backpressure),
  and the entries' idle time is renewed so other consumers do not take them over.
- Rows rejected by ClickHouse on their own: parked in the dead-letter stream (then
  acknowledged), the rest of the batch is stored.
- Redis down at ack time: retried with backoff; the rows are already stored.
- Shutdown: batches already handed over are still stored and acked, until
  ``shutdown_seconds`` after the stop; what is left then stays pending in Redis for the
  next consumer (its redelivery is deduplicated).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from redis.exceptions import RedisError

from watchllm_analytics.backoff import Backoff
from watchllm_analytics.batcher import Batch
from watchllm_analytics.blocks import RowBlock
from watchllm_analytics.clickhouse import ClickHouseUnavailable
from watchllm_analytics.dead_letters import DeadLetters, ParkReason
from watchllm_analytics.health import HealthState
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.stream_group import GroupConsumer
from watchllm_analytics.writer import RequestLogWriter, WriteOutcome

log = logging.getLogger(__name__)


class BatchStorer:
    def __init__(
        self,
        writer: RequestLogWriter,
        consumer: GroupConsumer,
        dead_letters: DeadLetters,
        metrics: AnalyticsMetrics,
        health: HealthState,
        *,
        renew_every_seconds: float,
        shutdown_seconds: float,
    ) -> None:
        self._writer = writer
        self._consumer = consumer
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._health = health
        self._renew_every = renew_every_seconds
        self._shutdown_seconds = shutdown_seconds
        self._deadline: float | None = None

    def begin_shutdown(self) -> None:
        """From now on, retries end ``shutdown_seconds`` later (the first call counts)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self._shutdown_seconds

    async def run(self, queue: asyncio.Queue[Batch[RowBlock] | None]) -> None:
        """Store batches from ``queue`` until it yields None."""
        while (batch := await queue.get()) is not None:
            await self.store(batch)

    async def store(self, batch: Batch[RowBlock]) -> None:
        rows = RowBlock.concat(batch.items)
        self._metrics.batch_rows.labels(batch.reason.value).observe(len(rows))
        outcome = await self._write_until_done(rows)
        if outcome is None:
            return
        self._record(rows, outcome)
        park = self._dead_letters.park
        for entry_id, fields, error in outcome.rejected:
            reason = ParkReason.REJECTED
            await self._until_done("dead_letter", partial(park, entry_id, fields, reason, error))
        entry_ids = rows.entry_ids
        if outcome.rejected:
            rejected = {entry_id for entry_id, _, _ in outcome.rejected}
            entry_ids = [entry_id for entry_id in entry_ids if entry_id not in rejected]
        await self._until_done("ack", partial(self._consumer.ack, entry_ids))

    async def _write_until_done(self, rows: RowBlock) -> WriteOutcome | None:
        backoff = Backoff(0.2, 5.0)
        renewed_at = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                outcome = await asyncio.to_thread(self._writer.write, rows)
            except ClickHouseUnavailable as exc:
                self._metrics.insert_errors.inc()
                self._health.write_failed(str(exc))
            else:
                self._metrics.insert_seconds.observe(time.monotonic() - started)
                self._health.write_succeeded()
                return outcome
            if self._past_deadline():
                log.error("shutting down with %d events not stored; they stay pending", len(rows))
                return None
            await asyncio.sleep(backoff.next())
            if time.monotonic() - renewed_at >= self._renew_every:
                await self._renew(rows.entry_ids)
                renewed_at = time.monotonic()

    def _record(self, rows: RowBlock, outcome: WriteOutcome) -> None:
        self._metrics.rows_written.inc(outcome.written)
        self._metrics.already_stored.inc(outcome.already_stored)
        if len(rows):
            oldest = rows.time_range()[0]
            self._metrics.event_lag.observe(max(0.0, time.time() - oldest.timestamp()))

    async def _renew(self, entry_ids: list[bytes]) -> None:
        try:
            await self._consumer.renew(entry_ids)
        except RedisError as exc:
            self._metrics.redis_errors.labels("renew").inc()
            log.warning("cannot renew pending entries: %s", exc)

    async def _until_done(self, operation: str, call: Callable[[], Awaitable[None]]) -> None:
        backoff = Backoff(0.1, 2.0)
        while True:
            try:
                await call()
                return
            except RedisError as exc:
                self._metrics.redis_errors.labels(operation).inc()
                self._health.redis_up = False
                if self._past_deadline():
                    log.error("shutting down before %s succeeded (%s); entries stay pending",
                              operation, exc)  # fmt: skip
                    return
                log.warning("%s failed, retrying: %s", operation, exc)
            await asyncio.sleep(backoff.next())

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline
