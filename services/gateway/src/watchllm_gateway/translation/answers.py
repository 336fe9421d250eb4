"""Whole answers and error bodies, from the deployment's shape to the caller's.

Usage carries the totals over, so the gateway prices a translated answer exactly as it
would the same answer untranslated: OpenAI ``prompt_tokens`` = Anthropic
``input_tokens`` + its cache-creation and cache-read tokens (cache reads also as
``prompt_tokens_details.cached_tokens``), and Anthropic ``input_tokens`` = OpenAI
``prompt_tokens`` (cached ones included; the cache breakdown is not carried).
Errors keep their HTTP status; their body takes the caller's shape, the provider's
message kept word for word.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from watchllm_gateway.translation.common import (
    FINISH_REASON,
    OPENAI_ERROR_TYPE,
    STOP_REASON,
    anthropic_error_type,
    as_dict,
    as_list,
)


def _int(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def openai_usage(usage: Any) -> dict[str, Any]:
    """OpenAI ``usage`` for Anthropic ``usage``."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _int(usage.get("cache_read_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + cached + _int(
        usage.get("cache_creation_input_tokens")
    )  # fmt: skip
    completion = _int(usage.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic ``usage`` for OpenAI ``usage``."""
    usage = usage if isinstance(usage, dict) else {}
    return {"input_tokens": _int(usage.get("prompt_tokens")),
            "output_tokens": _int(usage.get("completion_tokens"))}  # fmt: skip


def tool_call(block: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    """An OpenAI tool call for an Anthropic ``tool_use`` block (``index``: in a stream)."""
    call: dict[str, Any] = {} if index is None else {"index": index}
    call.update({"id": block.get("id"), "type": "function", "function": {
        "name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()
    }})  # fmt: skip
    return call


def openai_answer(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat completion for an Anthropic message."""
    content = [as_dict(block) for block in as_list(message.get("content"))]
    texts = [b.get("text") or "" for b in content if b.get("type") == "text"]
    calls = [tool_call(b) for b in content if b.get("type") == "tool_use"]
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None,
                             "refusal": None}  # fmt: skip
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "logprobs": None,
                     "finish_reason": FINISH_REASON.get(message.get("stop_reason") or "", "stop")}],
        "usage": openai_usage(message.get("usage")),
    }  # fmt: skip


def anthropic_answer(completion: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic message for an OpenAI chat completion (its first choice)."""
    choice = as_dict((as_list(completion.get("choices")) or [{}])[0])
    reply = as_dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    text = reply.get("content") or reply.get("refusal")
    if text:
        content.append({"type": "text", "text": text})
    for call in map(as_dict, as_list(reply.get("tool_calls"))):
        function = as_dict(call.get("function"))
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {"arguments": function.get("arguments")}  # the model's text, kept
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                        "input": arguments})  # fmt: skip
    return {
        "id": completion.get("id"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": STOP_REASON.get(choice.get("finish_reason") or "", "end_turn"),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def _message(body: Any, status: int) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])  # e.g. Azure's {"statusCode": 401, "message": ...}
    return f"The upstream provider answered HTTP {status}"


def openai_error(status: int, body: Any) -> dict[str, Any]:
    """An OpenAI error body for an Anthropic (or any) error body."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    code = kind if isinstance(kind, str) else None
    return {"error": {"message": _message(body, status),
                      "type": OPENAI_ERROR_TYPE.get(code or "", "api_error"),
                      "param": None, "code": code}}  # fmt: skip


def azure_error(status: int, body: Any) -> dict[str, Any]:
    """An Azure error body in OpenAI's shape: as it is when it has OpenAI's ``error``
    object (content-filter details kept), else rebuilt (Azure's front door answers
    ``{"statusCode", "message"}``)."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    return openai_error(status, body)


def anthropic_error(status: int, body: Any) -> dict[str, Any]:
    """An Anthropic error body for an OpenAI (or any) error body."""
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(status), "message": _message(body, status)},
    }
