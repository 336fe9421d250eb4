"""The cache service's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1)


class CacheServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.asks = Counter(
            "watchllm_cache_asks",
            "Semantic asks, by outcome: hit, miss, error, expired, unreadable; not looked up: "
            "too_long (question over the cap), shed (project's queue full), stopped.",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.asks_waiting = Gauge("watchllm_cache_asks_waiting",
                                  "Asks read, waiting for a worker.", registry=r)  # fmt: skip
        self.ask_latency = Histogram(
            "watchllm_cache_ask_service_seconds", "Ask read to reply published (embed+search).",
            buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self.stores = Counter("watchllm_cache_stores", "Answers stored, by layer.", ["layer"],
                              registry=r)  # fmt: skip
        self.embedding_reused = Counter(
            "watchllm_cache_embedding_reused", "Stores that reused the lookup's embedding.",
            registry=r,
        )  # fmt: skip
        self.errors = Counter("watchllm_cache_errors", "Failures, by stage.", ["stage"],
                              registry=r)  # fmt: skip
        self.dead_letters = Counter("watchllm_cache_dead_letters", "Messages parked in a DLQ.",
                                    registry=r)  # fmt: skip
        self.commands = Counter("watchllm_cache_commands", "Flushes and deletions applied.",
                                ["op"], registry=r)  # fmt: skip
        self.store_lag = Gauge("watchllm_cache_store_lag", "Stores not yet read.", registry=r)
