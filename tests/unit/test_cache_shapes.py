"""Cached answers: what may be stored, streams rebuilt into answers and replayed back,
and the per-request cache headers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from watchllm_gateway.cache_control import cache_policy
from watchllm_gateway.cache_shapes import StreamAssembler, replay_events, storable
from watchllm_gateway.errors import GatewayError
from watchllm_shared.accounts import CacheSettings

pytestmark = pytest.mark.unit

CHAT = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}  # fmt: skip
MESSAGE = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "Bonjour tout le monde, comment allez-vous?"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 7, "output_tokens": 8},
}  # fmt: skip


def test_only_complete_text_answers_are_storable() -> None:
    assert storable("/v1/chat/completions", CHAT) and storable("/v1/messages", MESSAGE)
    tool_call = {**CHAT, "choices": [{"index": 0, "message": {
        "role": "assistant", "content": None, "tool_calls": [{"id": "t"}]}}]}  # fmt: skip
    assert not storable("/v1/chat/completions", tool_call)
    tool_use = {**MESSAGE, "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}
    assert not storable("/v1/messages", tool_use)


@pytest.mark.parametrize(("endpoint", "body"), [("/v1/chat/completions", CHAT),
                                                 ("/v1/messages", MESSAGE)])  # fmt: skip
def test_replayed_stream_reassembles_into_the_same_answer(endpoint: str, body: dict) -> None:
    events = replay_events(endpoint, body, include_usage=True)
    assert len(events) > 4
    assembler = StreamAssembler(endpoint)
    for event in events:
        assembler.feed(event)
    rebuilt = assembler.result()
    assert rebuilt is not None
    if endpoint == "/v1/messages":
        assert rebuilt["content"] == body["content"] and rebuilt["usage"]["output_tokens"] == 8
        assert events[-1].startswith(b"event: message_stop")
    else:
        assert rebuilt["choices"][0]["message"] == body["choices"][0]["message"]
        assert rebuilt["usage"] == body["usage"] and events[-1] == b"data: [DONE]\n\n"


def test_openai_replay_without_usage_has_no_usage_chunk() -> None:
    events = replay_events("/v1/chat/completions", CHAT, include_usage=False)
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert all(c["choices"] for c in chunks)


def test_a_stream_with_a_tool_call_is_not_assembled() -> None:
    assembler = StreamAssembler("/v1/chat/completions")
    chunk = {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}
    assembler.feed(b"data: " + orjson.dumps(chunk) + b"\n\n")
    assert assembler.result() is None


def _assembled(endpoint: str, events: list[bytes]) -> dict[str, Any] | None:
    assembler = StreamAssembler(endpoint)
    for event in events:
        assembler.feed(event)
    return assembler.result()


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(extra: dict[str, Any] | None = None, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": "Mercury, Venus", **(extra or {})},
              "finish_reason": finish}  # fmt: skip
    return _data({"id": "c", "choices": [choice]})


def test_only_a_stream_that_ended_as_a_finished_answer_is_assembled() -> None:
    done = b"data: [DONE]\n\n"
    chat = "/v1/chat/completions"
    assert _assembled(chat, [_delta(), _delta(finish="stop"), done]) is not None
    assert _assembled(chat, [_delta()]) is None  # closed cleanly mid-answer
    assert _assembled(chat, [_delta(), done]) is None  # [DONE] without a finish_reason
    assert _assembled(chat, [_delta(finish="stop")]) is None  # no [DONE]
    error = _data({"error": {"message": "overloaded", "type": "server_error"}})
    assert _assembled(chat, [_delta(), error, done]) is None


def test_parts_the_assembler_does_not_rebuild_make_a_stream_uncacheable() -> None:
    done, chat = b"data: [DONE]\n\n", "/v1/chat/completions"
    refusal = _delta({"content": None, "refusal": "I can't help with that."}, finish="stop")
    assert _assembled(chat, [refusal, done]) is None
    with_logprobs = _data({"id": "c", "choices": [{"index": 0, "delta": {"content": "Hi"},
                                                   "logprobs": {"content": []},
                                                   "finish_reason": "stop"}]})  # fmt: skip
    assert _assembled(chat, [with_logprobs, done]) is None


def test_an_anthropic_stream_needs_its_stop_and_no_error() -> None:
    events = replay_events("/v1/messages", MESSAGE, include_usage=True)
    assert _assembled("/v1/messages", events) is not None
    assert _assembled("/v1/messages", events[:-1]) is None  # no message_stop
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"}}\n\n'
    assert _assembled("/v1/messages", [*events[:3], error]) is None


def test_cache_headers_narrow_the_project_settings() -> None:
    settings = CacheSettings(enabled=True, mode="semantic", similarity_threshold=0.9,
                             ttl_seconds=600)  # fmt: skip
    policy = cache_policy(settings, {})
    assert (policy.read, policy.write, policy.semantic, policy.ttl_seconds) == (
        True,
        True,
        True,
        600,
    )
    assert not cache_policy(settings, {"cache-control": "no-cache"}).read
    assert not cache_policy(settings, {"x-watchllm-no-store": "true"}).write
    assert cache_policy(settings, {"x-watchllm-cache-ttl": "60"}).ttl_seconds == 60
    raised = cache_policy(settings, {"x-watchllm-cache-threshold": "0.95"})
    assert (raised.threshold, raised.min_threshold) == (0.9, 0.95)
    # With no project bar the service's default applies, and the header still only
    # raises it: it travels separately, for the service to take the higher of the two.
    unset = cache_policy(CacheSettings(), {"x-watchllm-cache-threshold": "0.3"})
    assert (unset.threshold, unset.min_threshold) == (None, 0.3)
    assert not cache_policy(CacheSettings(enabled=False), {}).active


@pytest.mark.parametrize("headers", [{"x-watchllm-cache-ttl": "soon"},
                                     {"x-watchllm-cache-ttl": "0"},
                                     # byte 0xB2 read as latin-1: isdigit() but not int()
                                     {"x-watchllm-cache-ttl": "\u00b2"},
                                     {"x-watchllm-cache-threshold": "nan"},
                                     {"x-watchllm-cache-threshold": "1.5"},
                                     {"x-watchllm-cache-threshold": "high"}])  # fmt: skip
def test_malformed_cache_headers_are_a_400(headers: dict[str, str]) -> None:
    with pytest.raises(GatewayError) as error:
        cache_policy(CacheSettings(), headers)
    assert error.value.status == 400 and error.value.code == "invalid_cache_header"
