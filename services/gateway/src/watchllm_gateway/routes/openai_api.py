"""OpenAI-compatible endpoints served by the gateway itself (the proxied ones are in
``proxied``)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from watchllm_gateway.auth import extract_key
from watchllm_gateway.deps import RuntimeDep
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.settings import ProviderKind

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, runtime: RuntimeDep) -> Response:
    """The models this key may use (``model_access``), from the configured routes."""
    try:
        key = extract_key(request.headers.get("authorization"), request.headers.get("x-api-key"))
        grant = await runtime.proxy.authenticate(key)
    except GatewayError as error:
        return error.render(ProviderKind.OPENAI, "")
    created = int(time.time())
    data = [
        {"id": model, "object": "model", "created": created, "owned_by": provider.value}
        for model, provider in runtime.router.listed_models()
        if runtime.proxy.access.allows(model, grant.allowed_models)
    ]
    return JSONResponse({"object": "list", "data": data})
