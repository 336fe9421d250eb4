"""SSE splitting and usage extraction: what the gateway bills and forwards."""

from __future__ import annotations

import orjson
import pytest

from watchllm_gateway.sse import SSESplitter, event_data, event_name
from watchllm_gateway.usage import (
    AnthropicStreamUsage,
    OpenAIStreamUsage,
    usage_from_anthropic,
    usage_from_openai,
)

pytestmark = pytest.mark.unit


def _chunk(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_splitter_returns_whole_events_across_arbitrary_chunk_boundaries() -> None:
    stream = _chunk({"a": 1}) + _chunk({"b": 2}) + b"data: [DONE]\n\n"
    for size in (1, 3, 7, len(stream)):
        splitter = SSESplitter()
        events = []
        for i in range(0, len(stream), size):
            events += splitter.feed(stream[i : i + size])
        assert events == [_chunk({"a": 1}), _chunk({"b": 2}), b"data: [DONE]\n\n"]
        assert splitter.remainder() == b""


def test_splitter_normalises_crlf_and_keeps_a_partial_event_as_remainder() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b'event: ping\r\ndata: {}\r\n\r\ndata: {"x"') == [
        b"event: ping\ndata: {}\n\n"
    ]
    assert splitter.remainder() == b'data: {"x"'


def test_event_fields() -> None:
    event = b'event: message_delta\ndata: {"a": 1}\n\n'
    assert event_name(event) == b"message_delta"
    assert event_data(event) == b'{"a": 1}'
    assert event_data(b": comment\n\n") is None


def test_openai_stream_usage_is_read_and_hidden_unless_the_caller_asked() -> None:
    content = _chunk({"choices": [{"delta": {"content": "hi"}}], "usage": None})
    usage_chunk = _chunk({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}})
    hidden = OpenAIStreamUsage(caller_wants_usage=False)
    assert hidden.forward(content) is True
    assert hidden.forward(usage_chunk) is False
    assert (hidden.usage.prompt_tokens, hidden.usage.completion_tokens) == (12, 5)
    shown = OpenAIStreamUsage(caller_wants_usage=True)
    assert shown.forward(usage_chunk) is True
    assert shown.usage.completion_tokens == 5


def test_openai_stream_usage_beside_a_null_usage_elsewhere_in_the_chunk_is_still_read() -> None:
    odd = _chunk({"choices": [], "extra": {"usage": None},
                  "usage": {"prompt_tokens": 7, "completion_tokens": 3}})  # fmt: skip
    observer = OpenAIStreamUsage(caller_wants_usage=True)
    observer.forward(odd)
    assert (observer.usage.prompt_tokens, observer.usage.completion_tokens) == (7, 3)
    spaced = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n'
    observer.forward(spaced)
    assert (observer.usage.prompt_tokens, observer.usage.completion_tokens) == (2, 1)


def test_anthropic_stream_usage_takes_input_from_start_and_output_from_last_delta() -> None:
    observer = AnthropicStreamUsage()
    start = {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 30, "output_tokens": 1}},
    }
    observer.forward(b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n")
    delta = {"type": "message_delta", "usage": {"output_tokens": 42}}
    observer.forward(b"event: message_delta\ndata: " + orjson.dumps(delta) + b"\n\n")
    assert (observer.usage.prompt_tokens, observer.usage.completion_tokens) == (30, 42)


def test_usage_from_json_bodies_ignores_missing_or_bogus_values() -> None:
    assert usage_from_openai({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}).reported
    assert usage_from_openai({}).reported is False
    assert usage_from_openai({"usage": {"prompt_tokens": -1}}).prompt_tokens == 0
    anthropic = usage_from_anthropic({"usage": {"input_tokens": 9, "output_tokens": 2}})
    assert (anthropic.prompt_tokens, anthropic.completion_tokens) == (9, 2)
