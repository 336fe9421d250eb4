"""Parking messages that cannot be stored: ``<stream>.dlq``, with the reason.

A parked entry is copied to the dead-letter stream first and acknowledged second, so a
crash in between leaves it pending (and parked twice at worst), never lost. Each
dead-letter entry holds the original fields, plus ``source_stream``, ``source_id``,
``group``, ``consumer``, ``deliveries``, ``reason`` (a short kind) and ``error`` (the
full message). The dead-letter stream is never trimmed by WatchLLM: an operator reads,
replays or deletes it. Every parked entry is counted (``watchllm_analytics_dead_lettered
_total{reason}``) and the stream's length is exported as a gauge.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.stream_group import Fields, GroupConsumer

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 2_000


class ParkReason(StrEnum):
    UNREADABLE = "unreadable"  # not a RequestCompleted v1, or values out of range
    REJECTED = "rejected"  # ClickHouse refused the row on its own
    TOO_MANY_DELIVERIES = "too_many_deliveries"  # kept failing (or crashing consumers)


class DeadLetters:
    def __init__(self, consumer: GroupConsumer, metrics: AnalyticsMetrics) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self.stream = f"{consumer.stream}.dlq"

    async def park(
        self, entry_id: bytes, fields: Fields, reason: ParkReason, error: str, deliveries: int = 1
    ) -> None:
        record: dict[Any, Any] = dict(fields)
        record.update(
            source_stream=self._consumer.stream,
            source_id=entry_id,
            group=self._consumer.group,
            consumer=self._consumer.consumer,
            deliveries=str(deliveries),
            reason=reason.value,
            error=error[:_MAX_ERROR_CHARS],
            parked_at=datetime.now(UTC).isoformat(),
        )
        await self._consumer.redis.xadd(self.stream, record)
        await self._consumer.ack([entry_id])
        self._metrics.dead_lettered.labels(reason.value).inc()
        log.warning(
            "parked %s in %s (%s after %d deliveries): %s",
            entry_id.decode(), self.stream, reason.value, deliveries, error[:300],
        )  # fmt: skip

    async def size(self) -> int:
        return int(await self._consumer.redis.xlen(self.stream))
