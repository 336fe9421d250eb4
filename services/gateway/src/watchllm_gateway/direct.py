"""The proxied endpoints answered straight from the ASGI entry point.

FastAPI passes every request through its middleware stack (server errors, exception
telemetry, a body limit, exception handlers, an exit stack) and then the router, and
Starlette's ``StreamingResponse`` adds a task group per stream: together about a fifth
of the time the gateway adds before a stream's first byte (py-spy and
``make bench-gateway``). None of it does anything these three endpoints need: the
proxy reads its own body under its own limit, answers its own errors in the caller's
shape and has no dependencies to inject. So ``GatewayApp`` hands POSTs to them
straight to the proxy, and everything else (probes, ``/v1/models``, unknown paths,
other methods) goes through FastAPI as usual.

With tracing on they go through FastAPI too: the OpenTelemetry ASGI middleware that
``FastAPIInstrumentor`` adds reads the caller's ``traceparent`` and opens the server
span the request's own span belongs to.

Failure mode: an unexpected exception in the handler is logged and answered with the
500 body FastAPI's handler gives; one raised while the response is being sent goes to
uvicorn, which logs it and closes the connection (as it does for FastAPI routes).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from watchllm_gateway.endpoints import CHAT_COMPLETIONS, EMBEDDINGS, MESSAGES, EndpointSpec
from watchllm_gateway.errors import unexpected_error
from watchllm_gateway.proxy import Proxy

DIRECT_ENDPOINTS: dict[str, EndpointSpec] = {
    spec.path: spec for spec in (CHAT_COMPLETIONS, MESSAGES, EMBEDDINGS)
}


class GatewayApp(FastAPI):
    """FastAPI, with the proxied endpoints dispatched before its middleware stack once
    ``direct_proxy`` is set (at startup, when tracing is off)."""

    direct_proxy: Proxy | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxy = self.direct_proxy
        if proxy is not None and scope["type"] == "http" and scope["method"] == "POST":
            spec = DIRECT_ENDPOINTS.get(scope["path"])
            if spec is not None:
                scope["app"] = self
                request = Request(scope, receive)
                try:
                    response = await proxy.handle(request, spec)
                except Exception as exc:
                    response = unexpected_error(request, exc)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
