"""``python -m watchllm_gateway``: settings from the environment, then serve.

SIGTERM: requests in flight get most of ``gateway_shutdown_seconds`` to finish (uvicorn's
graceful shutdown; then they are cancelled), then the lifespan flushes what they
published in the rest (``settings.GatewaySettings.shutdown_split``), and the process
exits 0 (``watchllm_shared.serving``).
"""

from __future__ import annotations

from watchllm_gateway.http_protocol import guarded_protocol
from watchllm_gateway.main import create_app
from watchllm_gateway.routing import RoutesError, load_routes
from watchllm_gateway.settings import GatewaySettings
from watchllm_shared.heap import give_back_large_blocks
from watchllm_shared.metrics_listener import MetricsEndpoint
from watchllm_shared.serving import refuse_start, serve
from watchllm_shared.settings import MissingSecret
from watchllm_shared.telemetry import HTTP_SERVER_OPTIONS, configure_logging, configure_tracing


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    try:
        if settings.cache_enabled:
            settings.cache_key()  # checked again where the cache opens (``runtime``)
        load_routes(settings)  # loaded again where routing is built (``runtime``)
    except (MissingSecret, RoutesError) as exc:
        refuse_start(str(exc))
    give_back_large_blocks()  # request bodies of several MiB come and go
    app = create_app(settings)
    if configure_tracing("gateway", settings) is not None:  # else nothing is instrumented
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        FastAPIInstrumentor.instrument_app(app, **HTTP_SERVER_OPTIONS)
        AioHttpClientInstrumentor().instrument()
        RedisInstrumentor().instrument()
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    serve(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        metrics=MetricsEndpoint(
            app.state.metrics_registry,
            settings.gateway_metrics_port,
            "WATCHLLM_GATEWAY_METRICS_PORT",
        ),
        loop="uvloop",
        http=guarded_protocol(  # httptools, bounded: see ``http_protocol``
            settings.max_header_bytes,
            settings.header_read_timeout_seconds,
            settings.body_read_timeout_seconds,
            settings.gateway_max_connections,
        ),
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_split()[0],
    )


if __name__ == "__main__":
    main()
