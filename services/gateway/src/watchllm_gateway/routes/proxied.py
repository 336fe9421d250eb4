"""The proxied endpoints — chat completions, messages, embeddings — as plain Starlette
routes.

With tracing off, ``direct.GatewayApp`` answers them before FastAPI is reached and
these routes serve nothing; with tracing on, requests come here through the
OpenTelemetry middleware. They bypass FastAPI's dependency injection and request
wrapper on purpose: on the hot path those cost several percent of the gateway's CPU
per request (py-spy during ``make bench``), and these handlers need nothing but the
runtime on ``app.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from watchllm_gateway.endpoints import CHAT_COMPLETIONS, EMBEDDINGS, MESSAGES, EndpointSpec
from watchllm_gateway.runtime import GatewayRuntime


def _handler(spec: EndpointSpec) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        runtime: GatewayRuntime = request.app.state.runtime
        return await runtime.proxy.handle(request, spec)

    return handle


ROUTES = [
    Route(spec.path, _handler(spec), methods=["POST"])
    for spec in (CHAT_COMPLETIONS, MESSAGES, EMBEDDINGS)
]
