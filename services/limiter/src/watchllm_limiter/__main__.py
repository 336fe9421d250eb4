"""``python -m watchllm_limiter``: settings from the environment, then serve."""

from __future__ import annotations

import uvicorn

from watchllm_limiter.main import create_app
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.telemetry import configure_logging, configure_tracing


def main() -> None:
    settings = LimiterSettings()
    configure_logging("limiter", settings.log_level)
    configure_tracing("limiter", settings.otel_exporter_otlp_endpoint)
    uvicorn.run(
        create_app(settings),
        host=settings.limiter_host,
        port=settings.limiter_port,
        loop="uvloop",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
