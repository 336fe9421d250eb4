"""SSE splitting and usage extraction: what the gateway bills and forwards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import orjson
import pytest

from watchllm_gateway import streaming
from watchllm_gateway.cache_shapes import StreamAssembler
from watchllm_gateway.endpoints import CHAT_COMPLETIONS, MESSAGES
from watchllm_gateway.exchange import Exchange
from watchllm_gateway.sse import SSESplitter, event_data, event_name
from watchllm_gateway.streaming import relay_stream
from watchllm_gateway.upstream import UpstreamResponse
from watchllm_gateway.usage import (
    AnthropicStreamUsage,
    OpenAIStreamUsage,
    usage_from_anthropic,
    usage_from_openai,
)
from watchllm_shared.contracts import RequestStatus

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


def _split_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = SSESplitter()
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    return events + splitter.finish(), splitter.remainder()


def test_splitter_joins_a_crlf_terminator_split_between_chunks() -> None:
    first, usage = _chunk({"a": 1}), _chunk({"usage": {"prompt_tokens": 1}})
    crlf = (first + usage).replace(b"\n", b"\r\n")
    cut = crlf.index(b"\r\n\r\n") + 3  # "…\r\n\r" | "\n…"
    assert _split_all([crlf[:cut], crlf[cut:]]) == ([first, usage], b"")
    for size in (1, 2, 3, 5):  # and every other way of cutting it
        chunks = [crlf[i : i + size] for i in range(0, len(crlf), size)]
        assert _split_all(chunks) == ([first, usage], b"")


def test_splitter_reads_bare_cr_line_endings() -> None:
    stream = b"event: ping\rdata: {}\r\rdata: [DONE]\r\r"
    expected = [b"event: ping\ndata: {}\n\n", b"data: [DONE]\n\n"]
    assert _split_all([stream]) == (expected, b"")
    assert _split_all([stream[i : i + 1] for i in range(len(stream))]) == (expected, b"")
    # A lone "\r" then "\n" at the start of the next chunk is one line end, not two.
    assert _split_all([b"data: 1\r", b"\ndata: 2\r\n\r\n"]) == ([b"data: 1\ndata: 2\n\n"], b"")


def test_splitter_a_cr_at_the_very_end_of_the_stream_ends_the_event() -> None:
    splitter = SSESplitter()
    assert splitter.feed(b"data: [DONE]\r") == []
    assert splitter.feed(b"\r") == []  # kept back: a "\n" may still follow
    assert splitter.finish() == [b"data: [DONE]\n\n"]
    assert splitter.remainder() == b""
    half = SSESplitter()
    assert half.feed(b"data: {\r") == [] and half.finish() == []
    assert half.remainder() == b"data: {\n"  # ended mid-event, still reported as such


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


def test_anthropic_stream_usage_tolerates_null_and_bogus_usage() -> None:
    observer = AnthropicStreamUsage()
    for start in (
        {"type": "message_start", "message": {"usage": None}},
        {"type": "message_start", "message": None},
        {"type": "message_start", "message": {"usage": [1, 2]}},
    ):
        assert observer.forward(b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n")
    assert observer.usage.reported is False
    for delta in (
        {"type": "message_delta", "usage": None},
        {"type": "message_delta", "usage": {"output_tokens": "5", "input_tokens": True}},
        {"type": "message_delta", "usage": {"output_tokens": 5.0}},
    ):
        assert observer.forward(b"event: message_delta\ndata: " + orjson.dumps(delta) + b"\n\n")
    assert (observer.usage.prompt_tokens, observer.usage.completion_tokens) == (0, 0)
    last = {"type": "message_delta", "usage": {"output_tokens": 5}}
    observer.forward(b"event: message_delta\ndata: " + orjson.dumps(last) + b"\n\n")
    assert observer.usage.completion_tokens == 5 and observer.usage.reported
    assert not observer.done
    observer.forward(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')
    assert observer.done


def test_openai_stream_usage_notes_the_terminal_event() -> None:
    observer = OpenAIStreamUsage(caller_wants_usage=False)
    observer.forward(_chunk({"choices": [{"delta": {"content": "[DONE]"}}]}))
    assert not observer.done
    observer.forward(b"data: [DONE]\n\n")
    assert observer.done


class _FakeUpstream:
    """Enough of ``UpstreamResponse`` for ``relay_stream``: given chunks, then EOF."""

    def __init__(self, chunks: list[bytes], then_wait: bool = False) -> None:
        self._chunks = chunks
        self._then_wait = then_wait  # an upstream that is slow to end its body
        self.closed: bool | None = None  # None: open; else whether it was aborted
        self.drained: bool | None = None  # None: not asked to drain after the last event

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._then_wait:
            await asyncio.Event().wait()

    async def drain(self, within_seconds: float) -> bool:
        self.drained = not self._then_wait  # a slow upstream: given up on, not waited for
        return self.drained

    def close(self, abort: bool = False) -> None:
        self.closed = abort


async def _relay(
    exchange: Exchange, upstream: _FakeUpstream, recorded: list[Exchange]
) -> list[bytes]:
    relay = relay_stream(exchange, cast(UpstreamResponse, upstream), False, recorded.append)
    return [piece async for piece in relay]


async def test_an_unexpected_error_while_relaying_is_a_502_error_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken(OpenAIStreamUsage):
        def forward(self, event: bytes) -> bool:
            if b"boom" in event:
                raise AttributeError("'NoneType' object has no attribute 'get'")
            return super().forward(event)

    monkeypatch.setattr(streaming, "OpenAIStreamUsage", Broken)
    exchange, recorded = Exchange(CHAT_COMPLETIONS), []
    upstream = _FakeUpstream([_chunk({"a": 1}), _chunk({"boom": 1}), b"data: [DONE]\n\n"])
    pieces = await _relay(exchange, upstream, recorded)
    assert pieces[0] == _chunk({"a": 1})
    error = orjson.loads(event_data(pieces[-1]) or b"")
    assert error["error"]["type"] == "upstream_error" and len(pieces) == 2
    assert recorded == [exchange] and upstream.closed is True
    assert (exchange.http_status, exchange.status) == (502, RequestStatus.UPSTREAM_ERROR)
    assert exchange.error_type == "upstream_stream_unreadable"


async def test_an_anthropic_error_event_is_in_anthropics_format(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: AnthropicStreamUsage, event: bytes) -> bool:
        raise TypeError("unexpected")

    monkeypatch.setattr(AnthropicStreamUsage, "forward", broken)
    exchange, recorded = Exchange(MESSAGES), []
    pieces = await _relay(exchange, _FakeUpstream([b"event: ping\ndata: {}\n\n"]), recorded)
    (only,) = pieces
    assert event_name(only) == b"error"
    assert orjson.loads(event_data(only) or b"")["type"] == "error"
    assert exchange.error_type == "upstream_stream_unreadable" and recorded == [exchange]


async def test_the_relay_ends_at_the_terminal_event_without_waiting_for_upstream_eof() -> None:
    usage = _chunk({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}})
    upstream = _FakeUpstream(
        [
            _chunk({"choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]}) + usage,
            b"data: [DONE]\n\n",
        ],
        then_wait=True,
    )
    exchange, recorded = Exchange(CHAT_COMPLETIONS), []
    exchange.assembler = StreamAssembler(CHAT_COMPLETIONS.path)
    pieces = await asyncio.wait_for(_relay(exchange, upstream, recorded), 2)
    assert b"".join(pieces).endswith(b"data: [DONE]\n\n") and usage not in b"".join(pieces)
    assert exchange.status is RequestStatus.OK and upstream.closed is False
    assert (exchange.usage.prompt_tokens, exchange.usage.completion_tokens) == (11, 7)
    assert recorded == [exchange]
    cached = exchange.assembler.result()  # what the proxy stores for an ok exchange
    assert cached is not None and cached["choices"][0]["message"]["content"] == "Hi"
    assert cached["usage"] == {"prompt_tokens": 11, "completion_tokens": 7}


async def test_an_anthropic_relay_ends_at_message_stop_with_the_delta_usage() -> None:
    def sse(name: str, payload: dict[str, object]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    events = [
        sse("message_start", {"type": "message_start", "message": {"usage": None}}),
        sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        sse("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}}),
        sse("message_stop", {"type": "message_stop"}),
    ]
    exchange, recorded = Exchange(MESSAGES), []
    exchange.assembler = StreamAssembler(MESSAGES.path)
    upstream = _FakeUpstream(events, then_wait=True)
    pieces = await asyncio.wait_for(_relay(exchange, upstream, recorded), 2)
    assert pieces == events and exchange.status is RequestStatus.OK
    assert (exchange.usage.prompt_tokens, exchange.usage.completion_tokens) == (0, 5)
    cached = exchange.assembler.result()
    assert cached is not None and cached["content"] == [{"type": "text", "text": "Hi"}]


async def test_a_disconnect_after_the_terminal_event_is_not_an_abort() -> None:
    upstream = _FakeUpstream([_chunk({"choices": []}) + b"data: [DONE]\n\n"], then_wait=True)
    exchange, recorded = Exchange(CHAT_COMPLETIONS), []
    relay = relay_stream(exchange, cast(UpstreamResponse, upstream), True, recorded.append)
    assert (await relay.__anext__()).endswith(b"data: [DONE]\n\n")
    await relay.aclose()  # the caller hung up while the last chunk was being sent
    assert exchange.status is RequestStatus.OK and recorded == [exchange]
    before = _FakeUpstream([_chunk({"choices": []})], then_wait=True)
    cut, cut_recorded = Exchange(CHAT_COMPLETIONS), []
    relay = relay_stream(cut, cast(UpstreamResponse, before), True, cut_recorded.append)
    await relay.__anext__()
    await relay.aclose()
    assert cut.status is RequestStatus.CLIENT_DISCONNECTED and before.closed is True


async def test_an_event_the_cache_cannot_assemble_only_skips_caching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: StreamAssembler, event: bytes) -> None:
        raise AttributeError("'int' object has no attribute 'get'")

    monkeypatch.setattr(StreamAssembler, "feed", broken)
    usage = _chunk({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}})
    upstream = _FakeUpstream([_chunk({"choices": []}), usage, b"data: [DONE]\n\n"])
    exchange, recorded = Exchange(CHAT_COMPLETIONS), []
    exchange.assembler = StreamAssembler(CHAT_COMPLETIONS.path)
    pieces = await _relay(exchange, upstream, recorded)
    assert b"".join(pieces).endswith(b"data: [DONE]\n\n") and b"error" not in b"".join(pieces)
    assert exchange.status is RequestStatus.OK and exchange.assembler is None
    assert (exchange.usage.prompt_tokens, exchange.usage.completion_tokens) == (11, 7)
