"""Anthropic-compatible endpoints."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from watchllm_gateway.deps import RuntimeDep
from watchllm_gateway.endpoints import MESSAGES

router = APIRouter()


@router.post("/v1/messages")
async def messages(request: Request, runtime: RuntimeDep) -> Response:
    return await runtime.proxy.handle(request, MESSAGES)
