"""``python -m watchllm_limiter``: settings from the environment, then serve."""

from __future__ import annotations

from watchllm_limiter.main import create_app
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.metrics_listener import MetricsEndpoint
from watchllm_shared.serving import serve
from watchllm_shared.telemetry import HTTP_SERVER_OPTIONS, configure_logging, configure_tracing


def main() -> None:
    settings = LimiterSettings()
    configure_logging("limiter", settings.log_level)
    app = create_app(settings)
    if configure_tracing("limiter", settings) is not None:  # else nothing is instrumented
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        FastAPIInstrumentor.instrument_app(app, **HTTP_SERVER_OPTIONS)
        RedisInstrumentor().instrument()
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    serve(
        app,
        host=settings.limiter_host,
        port=settings.limiter_port,
        metrics=MetricsEndpoint(
            app.state.metrics_registry,
            settings.limiter_metrics_port,
            "WATCHLLM_LIMITER_METRICS_PORT",
        ),
        loop="uvloop",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=2,  # probes only; then the lifespan stops
    )


if __name__ == "__main__":
    main()
