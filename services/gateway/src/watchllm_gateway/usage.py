"""Token usage of a response, streamed or not, read from what the upstream reports.

- OpenAI JSON: ``usage.prompt_tokens``/``completion_tokens``.
- OpenAI stream: the gateway asks for ``stream_options.include_usage`` and reads the
  final chunk's ``usage``; if the caller had not asked for it, that usage-only chunk
  (``choices: []``) is withheld so the caller sees exactly the stream it asked for.
- Anthropic JSON: ``usage.input_tokens``/``output_tokens``.
- Anthropic stream: ``message_start`` carries input tokens, ``message_delta`` the
  output tokens (cumulative, so the last one wins).
- Embeddings: ``usage.prompt_tokens``.

Whatever the upstream puts there is tolerated: a ``null`` or non-object ``usage``
counts as not reported, and a count that is not a non-negative integer as 0.

The stream observers also note the stream's terminal event (OpenAI ``data: [DONE]``,
Anthropic ``message_stop``): once it is relayed the exchange is complete (``done``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from watchllm_gateway.sse import event_data, event_name


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False  # False when the upstream said nothing about usage

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _int(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0  # not bool, not float


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def usage_from_openai(body: Any) -> Usage:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")), True)


def usage_from_anthropic(body: Any) -> Usage:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return Usage()
    return Usage(_int(usage.get("input_tokens")), _int(usage.get("output_tokens")), True)


class OpenAIStreamUsage:
    """Watches OpenAI chat-completion chunks; decides which ones reach the caller."""

    def __init__(self, caller_wants_usage: bool) -> None:
        self.usage = Usage()
        self.done = False  # ``data: [DONE]`` seen: nothing more to read
        self._caller_wants_usage = caller_wants_usage

    def forward(self, event: bytes) -> bool:
        """Record usage from ``event``; False when the caller must not see it."""
        if b'"usage"' not in event:
            if b"[DONE]" in event and event_data(event) == b"[DONE]":
                self.done = True
            return True
        if event.count(b'"usage"') == 1 and (b'"usage":null' in event or b'"usage": null' in event):
            return True  # OpenAI's ``"usage": null`` on every chunk but the last: not parsed
        data = event_data(event)
        if data is None or data == b"[DONE]":
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
            self.usage = usage_from_openai(chunk)
            if not self._caller_wants_usage and chunk.get("choices") == []:
                return False
        return True


class AnthropicStreamUsage:
    def __init__(self) -> None:
        self.usage = Usage()
        self.done = False  # ``message_stop`` seen: nothing more to read

    def forward(self, event: bytes) -> bool:
        name = event_name(event)
        if name == b"message_stop":
            self.done = True
            return True
        if name not in (b"message_start", b"message_delta"):
            return True
        data = event_data(event)
        try:
            payload = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return True
        if not isinstance(payload, dict):
            return True
        if name == b"message_start":
            usage = _dict(_dict(payload.get("message")).get("usage"))
            self.usage.prompt_tokens = _int(usage.get("input_tokens"))
            self.usage.completion_tokens = _int(usage.get("output_tokens"))
        else:
            usage = _dict(payload.get("usage"))
            if "output_tokens" in usage:
                self.usage.completion_tokens = _int(usage.get("output_tokens"))
            if "input_tokens" in usage:
                self.usage.prompt_tokens = _int(usage.get("input_tokens"))
        if usage:
            self.usage.reported = True
        return True
