"""The gateway application: ``create_app(settings)`` builds one, nothing happens at import.

Run with ``python -m watchllm_gateway`` (reads settings from the environment) or
``uvicorn --factory watchllm_gateway.main:create_app``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.routes import openai_api, operations, proxied
from watchllm_gateway.runtime import open_runtime
from watchllm_gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            app.state.runtime = await open_runtime(settings, metrics, stack)
            yield

    app = FastAPI(
        title="WatchLLM gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.router.routes.extend(proxied.ROUTES)
    app.include_router(openai_api.router)
    app.include_router(operations.router)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def _error_body(message: str, type_: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods, in OpenAI's error shape."""
    assert isinstance(exc, HTTPException)
    return Response(
        _error_body(f"{request.method} {request.url.path}: {exc.detail}", "invalid_request_error",
                    "not_found" if exc.status_code == 404 else "invalid_request"),
        exc.status_code,
        media_type="application/json",
    )  # fmt: skip


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response(
        _error_body("Internal gateway error", "api_error", "internal_error"),
        500,
        media_type="application/json",
    )
