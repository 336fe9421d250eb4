"""The limiter service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class LimiterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.library_version = Gauge(
            "watchllm_limiter_library_version", "Version of the loaded Functions library.",
            registry=r,
        )  # fmt: skip
        self.syncs = Counter(
            "watchllm_limiter_syncs", "Project limit syncs into Redis, by trigger.",
            ["trigger"], registry=r,
        )  # fmt: skip
        self.sync_errors = Counter(
            "watchllm_limiter_sync_errors", "Failed limit syncs (retried).", registry=r
        )
        self.sync_latency = Histogram(
            "watchllm_limiter_sync_seconds", "Time to sync one project.", registry=r
        )
        self.tokens_charged = Counter(
            "watchllm_limiter_tokens_charged", "Tokens charged to TPM windows.", registry=r
        )
        self.spend_charged = Counter(
            "watchllm_limiter_spend_usd", "USD charged to budgets' spend (all requests).",
            registry=r,
        )  # fmt: skip
        self.events_processed = Counter(
            "watchllm_limiter_events", "Request-completed events handled, by outcome.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "watchllm_limiter_consumer_lag", "Events not yet read by the limiter group.",
            registry=r,
        )  # fmt: skip
        self.alert_attempts = Counter(
            "watchllm_limiter_alert_attempts", "Webhook calls for alerts, by outcome (delivered;"
            " failed: retried; parked: never deliverable; dropped: rule removed).", ["outcome"],
            registry=r,
        )  # fmt: skip
        self.alerts_waiting = Gauge(
            "watchllm_limiter_alerts_waiting", "Alerts this replica holds for a retry.",
            registry=r,
        )  # fmt: skip
        self.dead_letters = Counter(
            "watchllm_limiter_dead_letters", "Events parked in the dead-letter stream.",
            registry=r,
        )  # fmt: skip
