"""The fake provider's ASGI app: routing, validation, directives, failures, replies.

Endpoints:

- ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic): JSON or,
  with ``"stream": true``, SSE; ``POST /v1/embeddings``; ``GET /v1/models``.
- Azure OpenAI's paths, ``POST /openai/deployments/{name}/chat/completions`` and
  ``…/embeddings``, serve the same as the OpenAI ones when the query has an
  ``api-version`` (else 404, as Azure answers).
- ``GET /health``: ``{"status": "ok"}``.
- ``GET /_fake/requests``: the recorded ``/v1/*`` requests (see ``recorder``);
  ``DELETE /_fake/requests`` empties that log.

Errors use the shape of the path's provider (Anthropic for ``/v1/messages``, else
OpenAI): bad JSON, a non-object body or a missing field → 400, unknown path → 404,
wrong method → 405, body over ``max_body_bytes`` → 413. Each app instance has its own
request log, ``fail_times`` counters and random generator.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from watchllm_shared.fake_provider import anthropic_shapes, openai_shapes
from watchllm_shared.fake_provider.asgi import (
    BodyTooLarge,
    ClientGone,
    ErrorBody,
    Receive,
    Scope,
    Send,
    lifespan,
    parse_object,
    read_body,
    send_json,
    send_stream,
)
from watchllm_shared.fake_provider.config import FakeProviderConfig
from watchllm_shared.fake_provider.directives import (
    DirectiveError,
    Directives,
    FailCounter,
    parse_directives,
)
from watchllm_shared.fake_provider.recorder import RequestRecorder
from watchllm_shared.fake_provider.replies import last_user_text, reply_pieces


@dataclass(frozen=True, slots=True)
class _ChatDialect:
    error_body: ErrorBody
    validate: Callable[[dict[str, Any]], str | None]
    respond: Callable[[dict[str, Any], list[str], str | None], dict[str, Any]]
    stream: Callable[[dict[str, Any], list[str], str | None], list[bytes]]


_OPENAI = _ChatDialect(
    openai_shapes.error_body,
    openai_shapes.validate_chat,
    openai_shapes.chat_completion,
    openai_shapes.chat_stream,
)
_ANTHROPIC = _ChatDialect(
    anthropic_shapes.error_body,
    anthropic_shapes.validate_messages,
    anthropic_shapes.message,
    anthropic_shapes.message_stream,
)
_METHODS = {
    "/v1/chat/completions": "POST",
    "/v1/messages": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}


class FakeProvider:
    """The ASGI callable; ``recorder`` and ``fail_counter`` are open to in-process tests."""

    def __init__(self, config: FakeProviderConfig) -> None:
        self.config = config
        self.recorder = RequestRecorder(config.max_recorded_requests)
        self.fail_counter = FailCounter()
        self._rng = random.Random(config.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                await self._route(scope, receive, send)
            except ClientGone:
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        if path == "/health" or path.startswith("/_fake/"):
            await self._admin(method, path, send)
            return
        dialect = _ANTHROPIC if path == "/v1/messages" else _OPENAI
        try:
            raw = await read_body(receive, self.config.max_body_bytes)
        except BodyTooLarge:
            await send_json(send, 413, dialect.error_body(413, "request body too large"))
            return
        self.recorder.add(method, path, scope["query_string"], scope["headers"], raw)
        path = _azure_as_openai(path, scope["query_string"])
        expected = _METHODS.get(path)
        if expected is None:
            await send_json(send, 404, dialect.error_body(404, f"unknown path {path}"))
        elif method != expected:
            await send_json(send, 405, dialect.error_body(405, f"method {method} not allowed"))
        elif path == "/v1/models":
            await send_json(send, 200, openai_shapes.model_list(self.config.models))
        elif path == "/v1/embeddings":
            await self._embeddings(raw, send)
        else:
            await self._chat(dialect, raw, send)

    async def _admin(self, method: str, path: str, send: Send) -> None:
        if path == "/health" and method == "GET":
            await send_json(send, 200, {"status": "ok"})
        elif path == "/_fake/requests" and method == "GET":
            await send_json(send, 200, self.recorder.snapshot())
        elif path == "/_fake/requests" and method == "DELETE":
            self.recorder.clear()
            await send_json(send, 200, {"status": "cleared"})
        elif path in ("/health", "/_fake/requests"):
            await send_json(send, 405, openai_shapes.error_body(405, "method not allowed"))
        else:
            await send_json(send, 404, openai_shapes.error_body(404, f"unknown path {path}"))

    async def _chat(self, dialect: _ChatDialect, raw: bytes, send: Send) -> None:
        body = await parse_object(raw, dialect.error_body, send)
        if body is None:
            return
        problem = dialect.validate(body)
        if problem is not None:
            await send_json(send, 400, dialect.error_body(400, problem))
            return
        text = last_user_text(body["messages"])
        directives = await self._gate(text, dialect.error_body, send)
        if directives is None:
            return
        window = self.config.context_window_chars
        if window is not None and len(text) > window:
            await send_json(send, 400, _context_error(dialect, len(text), window))
            return
        pieces = reply_pieces(text, self.config.reply_words)
        if body.get("stream") is True:
            events = dialect.stream(body, pieces, directives.tool_call)
            await send_stream(
                send, events, self.config.chunk_delay_seconds, directives.stream_fail_after
            )
        else:
            await send_json(send, 200, dialect.respond(body, pieces, directives.tool_call))

    async def _embeddings(self, raw: bytes, send: Send) -> None:
        error_body = openai_shapes.error_body
        body = await parse_object(raw, error_body, send)
        if body is None:
            return
        problem = openai_shapes.validate_embeddings(body)
        if problem is not None:
            await send_json(send, 400, error_body(400, problem))
            return
        inputs = openai_shapes.embedding_inputs(body) or []
        if await self._gate("\n".join(inputs), error_body, send) is not None:
            payload = openai_shapes.embeddings(body, inputs, self.config.embedding_dims)
            await send_json(send, 200, payload)

    async def _gate(self, text: str, error_body: ErrorBody, send: Send) -> Directives | None:
        """Apply directives, delay and failures; None when an error was already sent."""
        try:
            directives = parse_directives(text)
        except DirectiveError as exc:
            await send_json(send, 400, error_body(400, str(exc)))
            return None
        delay = directives.delay
        if delay is None:
            delay = self.config.default_delay_seconds
        if delay:
            await asyncio.sleep(delay)
        failure = self._failure(directives)
        if failure is None:
            return directives
        status, message = failure
        retry_after = directives.retry_after
        if retry_after is None and self.config.error_retry_after is not None:
            retry_after = f"{self.config.error_retry_after:g}"
        extra = [(b"retry-after", retry_after.encode())] if retry_after is not None else None
        await send_json(send, status, error_body(status, message), extra)
        return None

    def _failure(self, directives: Directives) -> tuple[int, str] | None:
        if directives.status is not None:
            return directives.status, f"fake error: status {directives.status} by directive"
        if self.fail_counter.should_fail(directives):
            return 500, f"fake error: fail_times for key {directives.fail_key!r}"
        if self.config.error_rate and self._rng.random() < self.config.error_rate:
            return self.config.error_status, "fake error: random failure (error_rate)"
        return None


def _azure_as_openai(path: str, query: bytes) -> str:
    """``/openai/deployments/{name}/X?api-version=…`` is served as ``/v1/X``."""
    parts = path.split("/", 4)  # "", "openai", "deployments", name, rest
    if len(parts) == 5 and parts[1:3] == ["openai", "deployments"] and b"api-version=" in query:
        return "/v1/" + parts[4]
    return path


def _context_error(dialect: _ChatDialect, length: int, window: int) -> dict[str, Any]:
    if dialect is _ANTHROPIC:
        message = f"prompt is too long: {length} characters > {window} maximum"
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    message = f"This model's maximum context length is {window} characters; yours has {length}"
    return {"error": {"message": message, "type": "invalid_request_error",
                      "param": "messages", "code": "context_length_exceeded"}}  # fmt: skip


def create_fake_provider(config: FakeProviderConfig | None = None) -> FakeProvider:
    """A new fake provider app (fresh request log and counters) for ``config``."""
    return FakeProvider(config or FakeProviderConfig())
