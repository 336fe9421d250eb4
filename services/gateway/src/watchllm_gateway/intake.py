"""Reading request bodies without letting callers spend the gateway's memory.

The proxy reads a body only after the key was authenticated (``proxy``): a caller
without a working key never gets a byte of its body read by the app (uvicorn discards
it, see ``http_protocol``). What an authenticated caller can hold is bounded three ways,
each refusal answered in the caller's API shape:

- size: a declared ``Content-Length`` over ``max_body_bytes`` → 413 before reading; a
  chunked body → 413 as soon as it passes the limit;
- time: the whole body must arrive within ``body_read_timeout_seconds`` → 408;
- memory: the bytes of the bodies being read share one budget per process
  (``max_body_bytes_in_flight``), and one project may hold at most a quarter of it
  (``_PROJECT_SHARE``), so one tenant's stalled uploads cannot take the budget from the
  others. A body is charged its declared length up front (an upload that would not fit
  is refused before a byte is read, and a stalled one holds what it announced), a
  chunked one chunk by chunk. Past the budget → 503 ``server_busy`` with
  ``retry-after: 1`` (the SDKs retry it). The reservation ends when the read does:
  the budget bounds bodies in flight, not requests being served.

A revoked key's request is still recorded with the model it named (the dashboard shows
it): ``peek`` reads a body of at most ``REFUSED_PEEK_BYTES`` (declared), under the same
deadline and the project's share, and nothing larger.

A body that came whole with its head (``http_protocol.body_received``: nearly every
request) is taken as it is, with no timer and no reservation: it cannot stall, and its
memory is spent already (at most one network read).

A caller that hangs up mid-body: 499 ``client_disconnected`` (recorded; nobody reads
the answer). Before, Starlette's ``ClientDisconnect`` escaped as an unhandled error: a
traceback in the log per hung-up upload.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import orjson
from starlette.requests import ClientDisconnect, Request

from watchllm_gateway.endpoints import MAX_MODEL_CHARS
from watchllm_gateway.errors import GatewayError, bad_request
from watchllm_gateway.http_protocol import body_received

REFUSED_PEEK_BYTES = 64 * 1024
_PROJECT_SHARE = 4  # one project holds at most 1/4 of the budget


class BodyBudget:
    """Bytes of request bodies being read, per process and per project."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_project = max(total // _PROJECT_SHARE, 1)
        self.used = 0
        self._by_project: dict[UUID, int] = {}

    def reserve(self, project: UUID, size: int) -> bool:
        held = self._by_project.get(project, 0)
        if self.used + size > self.total or held + size > self.per_project:
            return False
        self.used += size
        self._by_project[project] = held + size
        return True

    def release(self, project: UUID, size: int) -> None:
        self.used -= size
        held = self._by_project[project] - size
        if held:
            self._by_project[project] = held
        else:
            del self._by_project[project]


class Intake:
    def __init__(self, max_body_bytes: int, timeout_seconds: float, budget: BodyBudget) -> None:
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds
        self.budget = budget

    async def read(self, request: Request, project: UUID) -> bytes:
        return await self._read(request, project, self.max_body_bytes)

    async def peek(self, request: Request, project: UUID) -> bytes | None:
        """The body if it declares at most ``REFUSED_PEEK_BYTES``; else None, unread."""
        declared = _declared_length(request)
        if declared is None or declared > REFUSED_PEEK_BYTES:
            return None
        try:
            return await self._read(request, project, REFUSED_PEEK_BYTES)
        except GatewayError:
            return None

    async def _read(self, request: Request, project: UUID, limit: int) -> bytes:
        declared = _declared_length(request)
        if declared is not None and declared > limit:
            raise _too_large(limit)
        if body_received(request.receive):  # came with the head: no wait, no new memory
            return await _all_of(request, limit)
        held = declared or 0
        if held and not self.budget.reserve(project, held):
            raise _busy()
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    if size > held:  # chunked, or more than declared (uvicorn refuses that)
                        if not self.budget.reserve(project, size - held):
                            raise _busy()
                        held = size
                    if chunk:
                        chunks.append(chunk)
        except TimeoutError as exc:
            raise GatewayError(
                408, "request_timeout",
                f"The request body did not arrive within {self.timeout_seconds:g} s",
                headers={"connection": "close"},
            ) from exc  # fmt: skip
        except ClientDisconnect as exc:
            raise GatewayError(499, "client_disconnected", "The caller went away") from exc
        finally:
            if held:
                self.budget.release(project, held)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk: no copy


async def _all_of(request: Request, limit: int) -> bytes:
    chunks = [chunk async for chunk in request.stream() if chunk]
    if sum(map(len, chunks)) > limit:
        raise _too_large(limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit():
        return int(declared)
    return None


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "request_too_large", f"Request body exceeds {limit} bytes")


def _busy() -> GatewayError:
    return GatewayError(
        503, "server_busy", "The gateway is reading too many request bodies; retry shortly",
        headers={"retry-after": "1"},
    )  # fmt: skip


def parse_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request body is not valid JSON: {exc}", "invalid_json") from exc
    if not isinstance(body, dict):
        raise bad_request("Request body must be a JSON object", "invalid_json")
    return body


def named_model(body: bytes | dict[str, Any] | None) -> str | None:
    """The model a request body names, if it is a JSON object naming one as a string
    (cut to ``MAX_MODEL_CHARS``: it is recorded, and the caller chose it)."""
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    model = body.get("model") if isinstance(body, dict) else None
    return model[:MAX_MODEL_CHARS] if isinstance(model, str) else None
