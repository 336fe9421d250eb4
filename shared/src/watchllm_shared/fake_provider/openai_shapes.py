"""OpenAI wire shapes: chat completions (JSON and SSE chunks), embeddings, models, errors.

Streams follow the real API: a first chunk with ``delta.role``, one chunk per reply
word, a chunk with ``finish_reason: "stop"``; when ``stream_options.include_usage`` is
true every chunk carries ``"usage": null`` and a last chunk has ``choices: []`` and the
usage; then ``data: [DONE]``. Embeddings are unit vectors derived from a hash of each
input, as floats or, for ``encoding_format: "base64"`` (the ``openai`` SDK's default),
little-endian float32 bytes in base64.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import uuid
from typing import Any

import orjson

from watchllm_shared.fake_provider.replies import count_words, prompt_tokens

_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}
_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
DONE = b"data: [DONE]\n\n"


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": _CODES.get(status)}}


def validate_chat(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    if not all(isinstance(message, dict) for message in messages):
        return "each message must be an object"
    return None


def _usage(body: dict[str, Any], pieces: list[str]) -> dict[str, int]:
    prompt = prompt_tokens(body["messages"])
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(pieces),
        "total_tokens": prompt + len(pieces),
    }


def tool_arguments(pieces: list[str]) -> list[str]:
    """The arguments of a ``[[fake:tool_call=NAME]]`` answer, as stream pieces."""
    encoded = orjson.dumps({"text": "".join(pieces)}).decode()
    third = max(len(encoded) // 3, 1)
    return [encoded[:third], encoded[third : 2 * third], encoded[2 * third :]]


def _tool_call(name: str, pieces: list[str]) -> dict[str, Any]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": "".join(tool_arguments(pieces))}}  # fmt: skip


def chat_completion(body: dict[str, Any], pieces: list[str], tool: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces), "refusal": None}
    if tool is not None:
        message.update(content=None, tool_calls=[_tool_call(tool, pieces)])
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop" if tool is None else "tool_calls",
            }
        ],
        "usage": _usage(body, pieces),
        "system_fingerprint": None,
    }


def chat_stream(body: dict[str, Any], pieces: list[str], tool: str | None) -> list[bytes]:
    """Every SSE event of the streamed response, ``[DONE]`` included."""
    options = body.get("stream_options")
    with_usage = isinstance(options, dict) and options.get("include_usage") is True
    base: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
    }
    if with_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    if tool is None:
        events.extend(chunk({"content": piece}) for piece in pieces)
    else:
        call = _tool_call(tool, pieces)
        call["function"]["arguments"] = ""
        events.append(chunk({"tool_calls": [{"index": 0, **call}]}))
        events.extend(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in tool_arguments(pieces)
        )
    events.append(chunk({}, "stop" if tool is None else "tool_calls"))
    if with_usage:
        final = {**base, "choices": [], "usage": _usage(body, pieces)}
        events.append(b"data: " + orjson.dumps(final) + b"\n\n")
    events.append(DONE)
    return events


def validate_embeddings(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    if embedding_inputs(body) is None:
        return "'input' must be a string or a non-empty array of strings"
    return None


def embedding_inputs(body: dict[str, Any]) -> list[str] | None:
    """The inputs as a list of strings; None when missing or of another type."""
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    return None


def _vector(text: str, dims: int) -> list[float]:
    raw = hashlib.shake_128(text.encode()).digest(2 * dims)
    values = [int.from_bytes(raw[i : i + 2], "big") / 32767.5 - 1.0 for i in range(0, 2 * dims, 2)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [value / norm for value in values]


def embeddings(body: dict[str, Any], inputs: list[str], dims: int) -> dict[str, Any]:
    as_base64 = body.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = []
    for index, text in enumerate(inputs):
        vector = _vector(text, dims)
        encoded: Any = vector
        if as_base64:
            encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(count_words(text) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": 1_700_000_000,
                "owned_by": "anthropic" if model.startswith("claude") else "openai",
            }
            for model in models
        ],
    }
