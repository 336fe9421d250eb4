"""Anthropic Messages API wire shapes: message JSON, the event stream, errors.

Like the real API, ``max_tokens`` is required (400 ``invalid_request_error`` when
missing); it does not cut the reply. The stream is ``message_start`` (input tokens,
``output_tokens: 1``), ``content_block_start``, ``ping``, one ``content_block_delta``
(``text_delta``) per reply word, ``content_block_stop``, ``message_delta``
(``stop_reason: "end_turn"`` and the final ``output_tokens``), ``message_stop``.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from watchllm_shared.fake_provider.openai_shapes import tool_arguments
from watchllm_shared.fake_provider.replies import prompt_tokens

_TYPES = {
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def validate_messages(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Field required"
    if max_tokens < 1:
        return "max_tokens: must be greater than or equal to 1"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    if not all(isinstance(message, dict) for message in messages):
        return "messages: each message must be an object"
    return None


def _message(
    body: dict[str, Any], content: list[dict[str, Any]], stop: str | None, output_tokens: int
) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt_tokens(body["messages"], body.get("system")),
            "output_tokens": output_tokens,
        },
    }


def _tool_use(name: str, pieces: list[str]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name,
            "input": orjson.loads("".join(tool_arguments(pieces)))}  # fmt: skip


def message(body: dict[str, Any], pieces: list[str], tool: str | None) -> dict[str, Any]:
    if tool is not None:
        return _message(body, [_tool_use(tool, pieces)], "tool_use", len(pieces))
    text = {"type": "text", "text": "".join(pieces)}
    return _message(body, [text], "end_turn", len(pieces))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def message_stream(body: dict[str, Any], pieces: list[str], tool: str | None) -> list[bytes]:
    """Every event of the streamed response, ``message_stop`` included."""
    start = _message(body, [], None, 1)
    block: dict[str, Any] = {"type": "text", "text": ""}
    deltas = [{"type": "text_delta", "text": piece} for piece in pieces]
    if tool is not None:
        block = {**_tool_use(tool, pieces), "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in tool_arguments(pieces)]
    events = [
        _event("message_start", {"type": "message_start", "message": start}),
        _event("content_block_start",
               {"type": "content_block_start", "index": 0, "content_block": block}),
        _event("ping", {"type": "ping"}),
    ]  # fmt: skip
    events.extend(
        _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        for delta in deltas
    )
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "end_turn" if tool is None else "tool_use",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": len(pieces)},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events
