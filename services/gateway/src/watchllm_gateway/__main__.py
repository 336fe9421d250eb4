"""``python -m watchllm_gateway``: settings from the environment, then serve."""

from __future__ import annotations

import uvicorn

from watchllm_gateway.main import create_app
from watchllm_gateway.settings import GatewaySettings
from watchllm_shared.telemetry import HTTP_SERVER_OPTIONS, configure_logging, configure_tracing


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
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
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
