"""The analytics application: ``create_app(settings)`` builds one, nothing happens at import.

Run with ``python -m watchllm_analytics`` (settings from the environment). The lifespan
starts the service (store, pipeline, monitor) and, on shutdown (SIGTERM), drains it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from watchllm_analytics import api
from watchllm_analytics.metrics import AnalyticsMetrics
from watchllm_analytics.runtime import AnalyticsService
from watchllm_analytics.settings import AnalyticsSettings


def create_app(
    settings: AnalyticsSettings | None = None, service: AnalyticsService | None = None
) -> FastAPI:
    """``service`` lets a test choose how a pipeline failure is handled. Refuses
    (``MissingSecret``) without a query token: the API answers every project's usage."""
    settings = settings or AnalyticsSettings()
    settings.query_token()
    service = service or AnalyticsService(settings, AnalyticsMetrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await service.start(stack)
            app.state.service = service
            yield

    # No /openapi.json, /docs or /redoc: nothing here is for browsing (issue 22).
    app = FastAPI(
        title="WatchLLM analytics",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(api.router)
    app.state.metrics_registry = service.metrics.registry  # served apart: ``__main__``
    return app
