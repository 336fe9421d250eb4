"""Cached answers in and out of the providers' wire shapes.

- ``storable``: only complete text answers are cached (chat: every choice a text
  message with no tool calls; messages: every content block text). Tool calls depend
  on the caller's tools and state; replaying them is not worth the risk.
- ``StreamAssembler``: rebuilds the non-stream JSON answer from a relayed stream, so a
  streamed answer is stored exactly like a non-stream one.
- ``replay_events``: turns a stored answer into a proper SSE stream of the endpoint's
  protocol (OpenAI chunks ending ``data: [DONE]``; Anthropic's event sequence).
"""

from __future__ import annotations

from typing import Any

import orjson

from watchllm_gateway.sse import event_data, event_name

_WORDS_PER_CHUNK = 4


def storable(endpoint: str, body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if endpoint == "/v1/messages":
        content = body.get("content")
        return isinstance(content, list) and all(
            isinstance(b, dict) and b.get("type") == "text" for b in content
        )
    choices = body.get("choices")
    return isinstance(choices, list) and bool(choices) and all(
        isinstance(c, dict) and isinstance(c.get("message"), dict)
        and isinstance(c["message"].get("content"), str)
        and not c["message"].get("tool_calls") and not c["message"].get("function_call")
        for c in choices
    )  # fmt: skip


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [
        " ".join(words[i : i + _WORDS_PER_CHUNK])
        + (" " if i + _WORDS_PER_CHUNK < len(words) else "")
        for i in range(0, len(words), _WORDS_PER_CHUNK)
    ] or [""]


def _sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def _openai_events(body: dict[str, Any], include_usage: bool) -> list[bytes]:
    base = {"id": body.get("id"), "object": "chat.completion.chunk",
            "created": body.get("created"), "model": body.get("model")}  # fmt: skip
    out = []
    for choice in body["choices"]:
        index = choice.get("index", 0)
        first = {"role": "assistant", "content": ""}
        out.append(_sse({**base, "choices": [{"index": index, "delta": first,
                                              "finish_reason": None}]}))  # fmt: skip
        for piece in _pieces(choice["message"]["content"]):
            delta = {"index": index, "delta": {"content": piece}, "finish_reason": None}
            out.append(_sse({**base, "choices": [delta]}))
        last = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}
        out.append(_sse({**base, "choices": [last]}))
    if include_usage and isinstance(body.get("usage"), dict):
        out.append(_sse({**base, "choices": [], "usage": body["usage"]}))
    out.append(b"data: [DONE]\n\n")
    return out


def _anthropic_events(body: dict[str, Any]) -> list[bytes]:
    usage = body.get("usage") or {}
    start_usage = {"input_tokens": usage.get("input_tokens", 0), "output_tokens": 0}
    start = {**body, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": start_usage}  # fmt: skip
    out = [_sse({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(body["content"]):
        opening = {"type": "content_block_start", "index": index,
                   "content_block": {"type": "text", "text": ""}}  # fmt: skip
        out.append(_sse(opening, "content_block_start"))
        for piece in _pieces(block.get("text", "")):
            delta = {"type": "content_block_delta", "index": index,
                     "delta": {"type": "text_delta", "text": piece}}  # fmt: skip
            out.append(_sse(delta, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
    end = {"type": "message_delta", "usage": {"output_tokens": usage.get("output_tokens", 0)},
           "delta": {"stop_reason": body.get("stop_reason", "end_turn"),
                     "stop_sequence": body.get("stop_sequence")}}  # fmt: skip
    out.append(_sse(end, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out


def replay_events(endpoint: str, body: dict[str, Any], include_usage: bool) -> list[bytes]:
    if endpoint == "/v1/messages":
        return _anthropic_events(body)
    return _openai_events(body, include_usage)


class StreamAssembler:
    """Feeds on relayed SSE events; ``result()`` is the equivalent non-stream body.

    Only a stream that ended as the protocol says a finished answer ends is ever cached
    (OpenAI: ``data: [DONE]`` with a ``finish_reason`` on every choice; Anthropic:
    ``message_stop`` after a ``stop_reason``): an upstream that closes the connection
    cleanly mid-answer, or sends an error event and closes, would otherwise leave a
    truncated answer to be served as a whole one. Parts this assembler does not rebuild
    (tool calls, refusals, logprobs, non-text blocks) make the answer uncacheable rather
    than cached without them.
    """

    def __init__(self, endpoint: str) -> None:
        self._anthropic = endpoint == "/v1/messages"
        self._body: dict[str, Any] = {}
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._ok = True
        self._ended = False  # the protocol's terminal event was seen

    def feed(self, event: bytes) -> None:
        if not self._ok:
            return
        data = event_data(event)
        if data == b"[DONE]" and not self._anthropic:
            self._ended = True
            return
        if data is None:
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._ok = False
            return
        if not isinstance(payload, dict):
            self._ok = False
        elif self._anthropic:
            self._feed_anthropic(event_name(event), payload)
        else:
            self._feed_openai(payload)

    def _feed_openai(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:  # an error sent inside the stream
            self._ok = False
            return
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self._body:
                self._body[key] = chunk[key]
        if isinstance(chunk.get("usage"), dict):
            self._body["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if (delta.get("tool_calls") or delta.get("function_call") or delta.get("refusal")
                    or choice.get("logprobs") is not None):  # fmt: skip
                self._ok = False
            index = choice.get("index", 0)
            self._texts.setdefault(index, []).append(delta.get("content") or "")
            if choice.get("finish_reason"):
                self._finish[index] = choice["finish_reason"]

    def _feed_anthropic(self, name: bytes | None, payload: dict[str, Any]) -> None:
        if name == b"message_start":
            self._body = dict(payload.get("message") or {})
        elif name == b"content_block_start":
            if (payload.get("content_block") or {}).get("type") != "text":
                self._ok = False
        elif name == b"content_block_delta":
            delta = payload.get("delta") or {}
            if delta.get("type") != "text_delta":
                self._ok = False
            self._texts.setdefault(payload.get("index", 0), []).append(delta.get("text", ""))
        elif name == b"message_delta":
            self._body.update({k: v for k, v in (payload.get("delta") or {}).items()})
            usage = dict(self._body.get("usage") or {})
            usage.update(payload.get("usage") or {})
            self._body["usage"] = usage
        elif name == b"message_stop":
            self._ended = True
        elif name == b"error":
            self._ok = False

    def _finished(self) -> bool:
        if not self._ended:
            return False
        if self._anthropic:
            return self._body.get("stop_reason") is not None
        return all(self._finish.get(i) for i in self._texts)

    def result(self) -> dict[str, Any] | None:
        """The assembled answer, or None when it cannot (or must not) be cached."""
        if not self._ok or not self._texts or not self._finished():
            return None
        if self._anthropic:
            content = [
                {"type": "text", "text": "".join(self._texts[i])} for i in sorted(self._texts)
            ]
            return {**self._body, "content": content}
        choices = [
            {"index": i, "message": {"role": "assistant", "content": "".join(self._texts[i])},
             "finish_reason": self._finish[i]}
            for i in sorted(self._texts)
        ]  # fmt: skip
        return {**self._body, "object": "chat.completion", "choices": choices}
