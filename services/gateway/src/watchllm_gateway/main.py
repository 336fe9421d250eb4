"""The gateway application: ``create_app(settings)`` builds one, nothing happens at import.

Run with ``python -m watchllm_gateway`` (reads settings from the environment) or
``uvicorn --factory watchllm_gateway.main:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from watchllm_gateway.direct import GatewayApp
from watchllm_gateway.errors import openai_error_body, unexpected_error
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.routes import openai_api, operations, proxied
from watchllm_gateway.runtime import open_runtime
from watchllm_gateway.settings import GatewaySettings
from watchllm_shared.heap import freeze_startup_heap


def create_app(settings: GatewaySettings | None = None) -> GatewayApp:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = app.state.runtime = await open_runtime(settings, metrics, stack)
            if not runtime.proxy.traced:  # see ``direct``
                app.direct_proxy = runtime.proxy
            freeze_startup_heap()  # full collections would walk it all, stalling requests
            yield
            app.direct_proxy = None

    # No /openapi.json, /docs or /redoc: callers use their provider's SDK, and the
    # schema would only tell a scanner what is here (issue 22).
    app = GatewayApp(
        title="WatchLLM gateway", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.router.routes.extend(proxied.ROUTES)
    app.include_router(openai_api.router)
    app.include_router(operations.router)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.state.metrics_registry = metrics.registry  # served apart: ``__main__``
    return app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, in OpenAI's error shape."""
    assert isinstance(exc, HTTPException)
    return Response(
        openai_error_body(
            f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error",
            "not_found" if exc.status_code == 404 else "invalid_request",
        ),
        exc.status_code,
        media_type="application/json",
    )  # fmt: skip


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return unexpected_error(request, exc)
