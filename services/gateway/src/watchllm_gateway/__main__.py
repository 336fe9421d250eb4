"""``python -m watchllm_gateway``: settings from the environment, then serve."""

from __future__ import annotations

import uvicorn

from watchllm_gateway.main import create_app
from watchllm_gateway.settings import GatewaySettings
from watchllm_shared.telemetry import configure_logging, configure_tracing


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    app = create_app(settings)
    if configure_tracing("gateway", settings.otel_exporter_otlp_endpoint) is not None:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="livez,readyz,metrics")
        AioHttpClientInstrumentor().instrument()
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
