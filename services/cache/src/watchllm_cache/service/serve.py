"""``python -m watchllm_cache`` (no arguments): run the cache service."""

from __future__ import annotations

from watchllm_cache.service.app import create_app
from watchllm_cache.service.settings import CacheServiceSettings
from watchllm_shared.metrics_listener import MetricsEndpoint
from watchllm_shared.serving import serve as serve_app
from watchllm_shared.telemetry import HTTP_SERVER_OPTIONS, configure_logging, configure_tracing


def serve() -> None:
    settings = CacheServiceSettings()
    configure_logging("cache", settings.log_level)
    app = create_app(settings)
    if configure_tracing("cache", settings) is not None:  # else nothing is instrumented
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        FastAPIInstrumentor.instrument_app(app, **HTTP_SERVER_OPTIONS)
        RedisInstrumentor().instrument()
    metrics = MetricsEndpoint(app.state.metrics_registry, settings.cache_metrics_port,
                              "WATCHLLM_CACHE_METRICS_PORT")  # fmt: skip
    serve_app(
        app, host=settings.cache_host, port=settings.cache_port, metrics=metrics,
        loop="uvloop", access_log=False, log_config=None,
        timeout_graceful_shutdown=2,  # probes only; then the lifespan stops
    )  # fmt: skip
