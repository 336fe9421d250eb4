"""``python -m watchllm_analytics``: settings from the environment, then serve.

SIGTERM (or Ctrl-C) stops reading, flushes the open batch, stores and acks it, then
exits 0; a second Ctrl-C exits at once, with 1 (what was not acked is redelivered later).
"""

from __future__ import annotations

from watchllm_analytics.main import create_app
from watchllm_analytics.pipeline import tune_garbage_collector
from watchllm_analytics.settings import AnalyticsSettings
from watchllm_shared.metrics_listener import MetricsEndpoint
from watchllm_shared.serving import refuse_start, serve
from watchllm_shared.settings import MissingSecret
from watchllm_shared.telemetry import HTTP_SERVER_OPTIONS, configure_logging, configure_tracing


def main() -> None:
    settings = AnalyticsSettings()
    configure_logging("analytics", settings.log_level)
    try:
        app = create_app(settings)
    except MissingSecret as exc:
        refuse_start(str(exc))
    tune_garbage_collector()
    if configure_tracing("analytics", settings) is not None:  # else nothing is instrumented
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        FastAPIInstrumentor.instrument_app(app, **HTTP_SERVER_OPTIONS)
        RedisInstrumentor().instrument()
    serve(
        app,
        host=settings.analytics_host,
        port=settings.analytics_port,
        metrics=MetricsEndpoint(
            app.state.metrics_registry,
            settings.analytics_metrics_port,
            "WATCHLLM_ANALYTICS_METRICS_PORT",
        ),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
