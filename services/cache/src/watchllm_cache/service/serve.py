"""``python -m watchllm_cache`` (no arguments): run the cache service."""

from __future__ import annotations

import uvicorn

from watchllm_cache.service.app import create_app
from watchllm_cache.service.settings import CacheServiceSettings
from watchllm_shared.telemetry import configure_logging, configure_tracing


def serve() -> None:
    settings = CacheServiceSettings()
    configure_logging("cache", settings.log_level)
    configure_tracing("cache", settings.otel_exporter_otlp_endpoint)
    uvicorn.run(
        create_app(settings), host=settings.cache_host, port=settings.cache_port, loop="uvloop",
        access_log=False, log_config=None, timeout_graceful_shutdown=10,
    )  # fmt: skip
