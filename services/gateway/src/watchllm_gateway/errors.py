"""One error type for the gateway, rendered once in the caller's provider shape.

``GatewayError`` carries an HTTP status, a machine code and a message. ``render``
turns it into OpenAI's ``{"error": {"message", "type", "code"}}`` on OpenAI routes or
Anthropic's ``{"type": "error", "error": {"type", "message"}}`` on /v1/messages, so the
official SDKs raise their matching exception classes (401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 413, 429 RateLimitError, 5xx
InternalServerError/APIStatusError).

Status table (DESIGN.md): 400 bad JSON or schema, 401 missing/bad key, 403 revoked key
or forbidden model, 404 unknown model, 413 oversized body, 429 limits, 502 upstream
failure, 503 a store the gateway cannot work without is down, 504 upstream timeout.
"""

from __future__ import annotations

import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from watchllm_gateway.settings import ProviderKind

log = logging.getLogger(__name__)

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        upstream_attempts: int = 0,
        error_type: str | None = None,  # instead of the status's (``budgets``)
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.upstream_attempts = upstream_attempts  # for the event, when upstream failed
        self.error_type = error_type

    def render(self, api: ProviderKind, request_id: str) -> Response:
        if api is ProviderKind.ANTHROPIC:
            error = {
                "type": self.error_type or _ANTHROPIC_TYPES.get(self.status, "api_error"),
                "message": self.message,
            }
            body = orjson.dumps({"type": "error", "error": error})
        else:
            body = openai_error_body(
                self.message, self.error_type or _OPENAI_TYPES.get(self.status, "api_error"),
                self.code,
            )  # fmt: skip
        headers = {"x-request-id": request_id, **self.headers}
        return Response(body, self.status, headers=headers, media_type="application/json")


def bad_request(message: str, code: str = "invalid_request") -> GatewayError:
    return GatewayError(400, code, message)


def openai_error_body(message: str, type_: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug, not a refusal: logged with its traceback, answered with a bare 500."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response(
        openai_error_body("Internal gateway error", "api_error", "internal_error"),
        500,
        media_type="application/json",
    )
