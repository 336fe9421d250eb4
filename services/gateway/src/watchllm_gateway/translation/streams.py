"""Streams, event by event: each upstream SSE event becomes the caller's events at once.

``feed(event)`` takes one whole upstream event (``sse.SSESplitter``) and returns the
caller's events (bytes, possibly none); ``finish()`` closes a stream whose upstream
ended without its terminal event after a finish (a compatible server that does not
send ``[DONE]``). An upstream error event becomes the caller's error event.

Anthropic → OpenAI chunks: ``message_start`` → a role chunk; text deltas → content
chunks; a ``tool_use`` block → a ``tool_calls`` chunk with its id and name, then its
``input_json_delta`` pieces as ``arguments`` pieces; ``message_delta`` → the
``finish_reason`` chunk; ``message_stop`` → a usage chunk (``choices: []``, withheld
by ``streaming`` from callers who did not ask for usage) and ``data: [DONE]``.
Thinking blocks and pings are not relayed.

OpenAI chunks → Anthropic events: the first chunk → ``message_start`` (input tokens 0:
OpenAI reports usage only at the end); content → a text block's deltas; each tool call
→ a ``tool_use`` block whose ``arguments`` pieces are ``input_json_delta``s; the
finish → the open block's ``content_block_stop``; ``[DONE]`` (after the usage chunk the
gateway always asks for) → ``message_delta`` with the stop reason and the whole usage
(input tokens too, as the Anthropic API does), then ``message_stop``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from watchllm_gateway.sse import event_data, event_name
from watchllm_gateway.translation.answers import (
    anthropic_error,
    anthropic_usage,
    openai_error,
    openai_usage,
)
from watchllm_gateway.translation.common import FINISH_REASON, STOP_REASON

_DONE = b"data: [DONE]\n\n"


class UntranslatableStream(ValueError):
    """An upstream event that cannot be expressed in the caller's stream format."""


def _json(event: bytes) -> Any:
    data = event_data(event)
    if data is None or data == b"[DONE]":
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UntranslatableStream("an upstream event is not JSON") from exc


class OpenAIChunks:
    """An Anthropic event stream as OpenAI chat-completion chunks."""

    def __init__(self) -> None:
        self._base: dict[str, Any] = {"id": None, "object": "chat.completion.chunk",
                                      "created": int(time.time()), "model": None}  # fmt: skip
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # Anthropic block index → OpenAI tool call index
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**self._base, "choices": [choice]}) + b"\n\n"

    def feed(self, event: bytes) -> list[bytes]:
        name = event_name(event)
        payload = _json(event)
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type", name.decode() if name else None)
        if kind == "message_start":
            message = payload.get("message") or {}
            self._base["id"], self._base["model"] = message.get("id"), message.get("model")
            self._usage = dict(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = payload.get("content_block") or {}
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            if block.get("type") == "tool_use":
                index = self._tools[payload.get("index", -1)] = len(self._tools)
                call = {"index": index, "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}  # fmt: skip
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (payload.get("usage") or {}).items()
                                if v is not None})  # fmt: skip
            stop = (payload.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASON.get(stop or "", "stop"))]
        if kind == "message_stop":
            self.done = True
            usage = {**self._base, "choices": [], "usage": openai_usage(self._usage)}
            return [b"data: " + orjson.dumps(usage) + b"\n\n", _DONE]
        if kind == "error":
            return [b"data: " + orjson.dumps(openai_error(500, payload)) + b"\n\n"]
        return []  # ping, content_block_stop, thinking

    def _delta(self, payload: dict[str, Any]) -> list[bytes]:
        delta = payload.get("delta") or {}
        if delta.get("type") == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if delta.get("type") == "input_json_delta":
            index = self._tools.get(payload.get("index", -1))
            if index is None:
                raise UntranslatableStream("arguments for a tool call that did not start")
            piece = {"index": index, "function": {"arguments": delta.get("partial_json", "")}}
            return [self._chunk({"tool_calls": [piece]})]
        return []  # thinking, signatures, citations

    def finish(self) -> list[bytes]:
        return []  # Anthropic always ends with message_stop; without it, it is truncated


class AnthropicEvents:
    """An OpenAI chat-completion chunk stream as Anthropic events."""

    def __init__(self) -> None:
        self._started = False
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", OpenAI index)
        self._blocks = 0  # Anthropic blocks started so far
        self._stop: str | None = None
        self._usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}
        self.done = False

    @staticmethod
    def _event(name: str, payload: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def feed(self, event: bytes) -> list[bytes]:
        if event_data(event) == b"[DONE]":
            return self._end()
        chunk = _json(event)
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            return [self._event("error", anthropic_error(500, chunk))]
        out = [] if self._started else [self._start(chunk)]
        if isinstance(chunk.get("usage"), dict):
            self._usage = anthropic_usage(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice(choice))
        return out

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        message: dict[str, Any] = {"id": chunk.get("id"), "type": "message", "role": "assistant",
                   "model": chunk.get("model"), "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": dict(self._usage)}  # fmt: skip
        return self._event("message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        delta = choice.get("delta") or {}
        out: list[bytes] = []
        text = delta.get("content") or delta.get("refusal")
        if text:
            out.extend(self._open_block(("text", -1), {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            index = call.get("index", 0)
            function = call.get("function") or {}
            if self._open != ("tool", index):
                if call.get("id") is None:
                    raise UntranslatableStream("tool call pieces interleaved")
                block = {"type": "tool_use", "id": call["id"], "name": function.get("name"),
                         "input": {}}  # fmt: skip
                out.extend(self._open_block(("tool", index), block))
            if function.get("arguments"):
                piece = {"type": "input_json_delta", "partial_json": function["arguments"]}
                out.append(self._block_delta(piece))
        if choice.get("finish_reason"):
            self._stop = STOP_REASON.get(choice["finish_reason"], "end_turn")
            out.extend(self._close_block())
        return out

    def _open_block(self, which: tuple[str, int], block: dict[str, Any]) -> list[bytes]:
        if self._open == which:
            return []
        out = self._close_block()
        self._open = which
        self._blocks += 1
        start = {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        return [*out, self._event("content_block_start", start)]

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        return self._event("content_block_delta", payload)

    def _close_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        stop = {"type": "content_block_stop", "index": self._blocks - 1}
        return [self._event("content_block_stop", stop)]

    def _end(self) -> list[bytes]:
        if self.done:
            return []
        self.done = True
        out = [] if self._started else [self._start({})]
        out.extend(self._close_block())
        delta = {"stop_reason": self._stop or "end_turn", "stop_sequence": None}
        out.append(
            self._event(
                "message_delta", {"type": "message_delta", "delta": delta, "usage": self._usage}
            )
        )
        out.append(self._event("message_stop", {"type": "message_stop"}))
        return out

    def finish(self) -> list[bytes]:
        """The upstream ended without ``[DONE]``: complete only if it had finished."""
        return self._end() if self._stop is not None and not self.done else []
