"""Settings of the cache service process (the semantic core's are in ``..settings``)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from watchllm_cache.settings import SemanticSettings


class CacheServiceSettings(SemanticSettings):
    cache_host: str = "127.0.0.1"
    cache_port: int = 8091
    cache_metrics_port: int = Field(
        default=9191, description="/metrics, on a listener of its own (not the API port)."
    )
    cache_consumer_name: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}"
    )
    cache_reclaim_idle_ms: int = Field(default=30_000, gt=0)
    cache_max_deliveries: int = Field(default=5, gt=0)
    cache_heartbeat_seconds: float = Field(default=5.0, gt=0)
    cache_ask_workers: int = Field(
        default=2, gt=0,
        description="Asks looked up at once (the semantic core embeds on 2 threads).",
    )  # fmt: skip
    cache_ask_queue_per_project: int = Field(
        default=32, gt=0,
        description="Asks one project may have waiting; a newer one sheds its oldest (a "
        "miss). Waiting asks are served round-robin across projects (``service.asks``).",
    )  # fmt: skip
