"""The analytics service's Prometheus metrics, on a registry owned by one app instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ROWS = (1, 10, 50, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)


class AnalyticsMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._stream_metrics(self.registry)
        self._store_metrics(self.registry)

    def _stream_metrics(self, r: CollectorRegistry) -> None:
        self.consumer_lag = Gauge(
            "watchllm_analytics_consumer_lag",
            "Events in the stream not yet read by the analytics group.", registry=r,
        )  # fmt: skip
        self.pending = Gauge(
            "watchllm_analytics_pending",
            "Events read by the group and not yet acknowledged (stored).", registry=r,
        )  # fmt: skip
        self.dead_letter_size = Gauge(
            "watchllm_analytics_dead_letter_size", "Entries in the dead-letter stream.", registry=r
        )
        self.dead_lettered = Counter(
            "watchllm_analytics_dead_lettered", "Entries parked in the dead-letter stream.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.redelivered = Counter(
            "watchllm_analytics_redelivered",
            "Entries read again: own pending after a restart, or reclaimed from others.",
            ["source"], registry=r,
        )  # fmt: skip
        self.lost_trimmed = Counter(
            "watchllm_analytics_lost_trimmed",
            "Pending entries trimmed from the stream (MAXLEN) before they were stored.",
            registry=r,
        )  # fmt: skip
        self.redis_errors = Counter(
            "watchllm_analytics_redis_errors", "Redis calls that failed, by operation.",
            ["operation"], registry=r,
        )  # fmt: skip

    def _store_metrics(self, r: CollectorRegistry) -> None:
        self.batch_rows = Histogram(
            "watchllm_analytics_batch_rows", "Rows per batch handed to the writer.",
            ["reason"], buckets=_ROWS, registry=r,
        )  # fmt: skip
        self.insert_seconds = Histogram(
            "watchllm_analytics_insert_seconds",
            "One batch: duplicate check plus insert into ClickHouse.",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.insert_errors = Counter(
            "watchllm_analytics_insert_errors",
            "Failed batch writes (ClickHouse unavailable), retried.", registry=r,
        )  # fmt: skip
        self.rows_written = Counter(
            "watchllm_analytics_rows_written", "Rows inserted into the request log.", registry=r
        )
        self.already_stored = Counter(
            "watchllm_analytics_already_stored",
            "Events not written again because their id was already stored (redeliveries).",
            registry=r,
        )  # fmt: skip
        self.event_lag = Histogram(
            "watchllm_analytics_event_lag_seconds",
            "Event time to stored and queryable, for the oldest event of each batch.",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.query_seconds = Histogram(
            "watchllm_analytics_query_seconds", "Dashboard queries answered, by name.",
            ["query"], buckets=_SECONDS, registry=r,
        )  # fmt: skip
