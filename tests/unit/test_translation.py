"""The pure translation functions: requests both ways, answers, usage, errors, streams
(fed the fake provider's own event sequences), and which deployments a request can
reach. (Through a gateway and the SDKs: tests/routing/test_translation_e2e.py.)"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from watchllm_gateway.cache_shapes import StreamAssembler, storable
from watchllm_gateway.endpoints import CHAT_COMPLETIONS, MESSAGES
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.routing import Candidates, Deployment
from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.sse import SSESplitter, event_data
from watchllm_gateway.translation import Outbound
from watchllm_gateway.translation.answers import (
    anthropic_answer,
    anthropic_error,
    azure_error,
    openai_answer,
    openai_error,
)
from watchllm_gateway.translation.streams import AnthropicEvents, OpenAIChunks
from watchllm_gateway.translation.to_anthropic import anthropic_request
from watchllm_gateway.translation.to_openai import openai_request
from watchllm_gateway.usage import (
    AnthropicStreamUsage,
    OpenAIStreamUsage,
    usage_from_anthropic,
    usage_from_openai,
)
from watchllm_shared.fake_provider import anthropic_shapes, openai_shapes

pytestmark = pytest.mark.unit

USER = {"role": "user", "content": "hi"}


def refusal(call: Any, *args: Any) -> str:
    with pytest.raises(GatewayError) as refused:
        call(*args)
    assert (refused.value.status, refused.value.code) == (400, "untranslatable_parameter")
    return refused.value.message


def test_an_openai_conversation_becomes_anthropic_turns() -> None:
    body = {
        "model": "m", "max_completion_tokens": 99, "temperature": 1, "top_p": 0.9,
        "stop": "END", "stream": True, "user": "u1", "seed": 7, "n": 1, "logprobs": False,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "A"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD",
                                                    "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
            {"role": "developer", "content": [{"type": "text", "text": "B"}]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g",
                                                              "arguments": '{"a": 1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "two"}]},
        ],
    }  # fmt: skip
    out = anthropic_request(body)
    assert {k: v for k, v in out.items() if k != "messages"} == {
        "model": "m", "max_tokens": 99, "temperature": 1, "top_p": 0.9,
        "stop_sequences": ["END"], "stream": True, "metadata": {"user_id": "u1"},
        "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
    }  # fmt: skip
    user, assistant, results = out["messages"]
    assert user["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
    ]
    assert [b["input"] for b in assistant["content"]] == [{}, {"a": 1}]  # empty text left out
    assert results == {"role": "user", "content": [  # both results in one turn
        {"type": "tool_result", "tool_use_id": "c1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "two"}]},
    ]}  # fmt: skip


def test_openai_tools_and_tool_choice_become_anthropic_ones() -> None:
    tool = {"type": "function", "function": {"name": "f", "strict": True}}
    out = anthropic_request({"model": "m", "messages": [USER], "tools": [tool],
                             "tool_choice": "required", "parallel_tool_calls": False})  # fmt: skip
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    named = {"type": "function", "function": {"name": "f"}}
    out = anthropic_request({"model": "m", "messages": [USER], "tools": [tool],
                             "tool_choice": named})  # fmt: skip
    assert out["tool_choice"] == {"type": "tool", "name": "f"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"temperature": 1.5}, "'temperature'"),
        ({"n": 2}, "'n'"),
        ({"logprobs": True}, "'logprobs'"),
        ({"response_format": {"type": "json_object"}}, "'response_format'"),
        ({"frequency_penalty": 0.5}, "'frequency_penalty'"),
        ({"reasoning_effort": "low"}, "'reasoning_effort'"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "'tools[0]'"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
         "'messages[0].content[0]'"),
        ({"messages": [{"role": "user", "name": "bob", "content": "x"}]}, "'messages[0].name'"),
        ({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
         "'messages[0].tool_calls[0].function.arguments'"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
         "'messages[0].content[0].image_url'"),
    ],
)  # fmt: skip
def test_what_anthropic_cannot_take_is_refused_by_name(extra: dict[str, Any], named: str) -> None:
    message = refusal(anthropic_request, {"model": "m", "messages": [USER], **extra})
    assert message.startswith(f"{named} cannot be sent to the model's Anthropic deployment")


def test_an_anthropic_conversation_becomes_openai_messages() -> None:
    body = {
        "model": "m", "max_tokens": 10, "system": [{"type": "text", "text": "S",
                                                    "cache_control": {"type": "ephemeral"}}],
        "stop_sequences": ["a", "b"], "stream": True, "thinking": {"type": "disabled"},
        "service_tier": "auto", "metadata": {"user_id": "u"},
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "let me"},
                                              {"type": "tool_use", "id": "t1", "name": "f",
                                               "input": {"x": 1}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "r", "is_error": True},
                {"type": "image", "source": {"type": "url", "url": "https://x/i.png"}},
                {"type": "text", "text": "and?"}]},
        ],
    }  # fmt: skip
    out = openai_request(body)
    assert out["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": "S"}]},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "let me", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r"},  # before the turn's text
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/i.png"}},
            {"type": "text", "text": "and?"}]},
    ]  # fmt: skip
    assert {k: v for k, v in out.items() if k not in ("messages", "tools")} == {
        "model": "m", "max_completion_tokens": 10, "stop": ["a", "b"], "stream": True,
        "stream_options": {"include_usage": True}, "user": "u",
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "parallel_tool_calls": False,
    }  # fmt: skip
    assert out["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"top_k": 5}, "'top_k'"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "'thinking'"),
        ({"stop_sequences": ["1", "2", "3", "4", "5"]}, "'stop_sequences'"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "'tools[0]'"),
        ({"metadata": {"other": 1}}, "'metadata'"),
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
         "'messages[0].content[0]'"),
        ({"messages": [{"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "s"}]}]},
         "'messages[0].content[0]'"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
            "content": [{"type": "image", "source": {}}]}]}]},
         "'messages[0].content[0].content[0]'"),
    ],
)  # fmt: skip
def test_what_openai_cannot_take_is_refused_by_name(extra: dict[str, Any], named: str) -> None:
    message = refusal(openai_request, {"model": "m", "max_tokens": 5, "messages": [USER], **extra})
    assert message.startswith(f"{named} cannot be sent to the model's OpenAI deployment")


def test_whole_answers_keep_tool_calls_stop_reasons_and_usage() -> None:
    message = {"id": "msg_1", "type": "message", "model": "claude", "stop_reason": "tool_use",
               "content": [{"type": "text", "text": "calling"},
                           {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}],
               "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 5,
                         "cache_creation_input_tokens": 2}}  # fmt: skip
    completion = openai_answer(message)
    choice = completion["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == ("tool_calls", "calling")
    assert choice["message"]["tool_calls"] == [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]
    assert completion["usage"] == {
        "prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21,
        "prompt_tokens_details": {"cached_tokens": 5},
    }  # fmt: skip
    back = anthropic_answer(completion)
    assert (back["content"], back["stop_reason"]) == (message["content"], "tool_use")
    assert usage_from_anthropic(back) == usage_from_openai(completion)
    for finish, stop in (("stop", "end_turn"), ("length", "max_tokens"),
                         ("content_filter", "refusal")):  # fmt: skip
        answer = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
        assert anthropic_answer(answer)["stop_reason"] == stop


def test_error_bodies_take_the_callers_shape_and_keep_the_message() -> None:
    claude = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert openai_error(529, claude) == {"error": {
        "message": "busy", "type": "server_error", "param": None, "code": "overloaded_error"
    }}  # fmt: skip
    gpt = openai_shapes.error_body(429, "slow down")
    assert anthropic_error(429, gpt) == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "slow down"}}  # fmt: skip
    front_door = {"statusCode": 401, "message": "Access denied"}  # Azure, not OpenAI's shape
    assert azure_error(401, front_door)["error"]["message"] == "Access denied"
    filtered = {"error": {"message": "filtered", "code": "content_filter", "innererror": {}}}
    assert azure_error(400, filtered) is filtered  # OpenAI's shape already: details kept
    assert anthropic_error(500, "<html>") == {"type": "error", "error": {
        "type": "api_error", "message": "The upstream provider answered HTTP 500"}}  # fmt: skip


def _translate(translator: OpenAIChunks | AnthropicEvents, events: list[bytes]) -> list[bytes]:
    out = [piece for event in events for piece in translator.feed(event)]
    return out + translator.finish()


def _chunks(events: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(event_data(e) or b"") for e in events if event_data(e) != b"[DONE]"]


def test_an_anthropic_stream_becomes_openai_chunks_with_exact_usage() -> None:
    body = {"model": "claude", "messages": [USER], "max_tokens": 5}
    upstream = anthropic_shapes.message_stream(body, ["Echo:", " hi", " there"], None)
    events = _translate(OpenAIChunks(), upstream)
    chunks = _chunks(events)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == (
        "Echo: hi there"
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and events[-1] == b"data: [DONE]\n\n"
    observer = OpenAIStreamUsage(caller_wants_usage=False)
    shown = [event for event in events if observer.forward(event)]
    assert len(shown) == len(events) - 1  # the usage chunk only for callers who asked
    native = AnthropicStreamUsage()
    for event in upstream:
        native.forward(event)
    assert observer.usage == native.usage and observer.usage.completion_tokens == 3


def test_an_anthropic_tool_stream_becomes_openai_tool_call_pieces() -> None:
    body = {"model": "claude", "messages": [USER], "max_tokens": 5}
    upstream = anthropic_shapes.message_stream(body, ["Echo:", " x"], "lookup")
    chunks = _chunks(_translate(OpenAIChunks(), upstream))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[:-1]
             if "tool_calls" in c["choices"][0]["delta"]]  # fmt: skip
    assert (calls[0]["index"], calls[0]["function"]["name"]) == (0, "lookup")
    assert calls[0]["id"].startswith("toolu_")
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"text": "Echo: x"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_openai_stream_becomes_anthropic_events_with_exact_usage() -> None:
    body = {"model": "gpt", "messages": [USER], "stream_options": {"include_usage": True}}
    upstream = openai_shapes.chat_stream(body, ["Echo:", " hi"], "lookup")
    events = _translate(AnthropicEvents(), upstream)
    names = [e.split(b"\n", 1)[0].removeprefix(b"event: ").decode() for e in events]
    assert names == ["message_start", "content_block_start", *["content_block_delta"] * 3,
                     "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    payloads = [orjson.loads(event_data(e) or b"") for e in events]
    assert payloads[1]["content_block"]["name"] == "lookup"
    assert payloads[-2]["delta"]["stop_reason"] == "tool_use"
    observer, native = AnthropicStreamUsage(), OpenAIStreamUsage(caller_wants_usage=True)
    for event in events:
        observer.forward(event)
    for event in upstream:
        native.forward(event)
    assert observer.usage == native.usage and observer.usage.prompt_tokens > 0


def test_an_openai_stream_that_ends_without_done_is_still_closed() -> None:
    upstream = openai_shapes.chat_stream({"model": "gpt", "messages": [USER]}, ["a"], None)
    events = _translate(AnthropicEvents(), upstream[:-1])  # no [DONE]
    assert events[-1].startswith(b"event: message_stop")
    splitter = SSESplitter()
    assert splitter.feed(b"".join(events)) == events  # whole events, one after the other


def deployment(name: str, provider: ProviderKind) -> Deployment:
    return Deployment(name, provider, "http://x", None)


def test_a_request_reaches_only_the_deployments_it_can_be_translated_for() -> None:
    gpt, claude = (
        deployment("gpt", ProviderKind.OPENAI),
        deployment("claude", ProviderKind.ANTHROPIC),
    )
    chain = (Candidates("a", (gpt,)), Candidates("b", (claude,)))
    body = {"model": "a", "messages": [USER], "logprobs": True}
    reached = Outbound(CHAT_COMPLETIONS, body, {}).reachable(chain)
    assert [c.model for c in reached] == ["a"]  # the fallback could not take logprobs
    message = refusal(Outbound(CHAT_COMPLETIONS, {**body, "model": "b"}, {}).reachable,
                      (Candidates("b", (claude,)), Candidates("a", (gpt,))))  # fmt: skip
    assert "'logprobs'" in message  # the requested model itself cannot: 400
    outbound = Outbound(CHAT_COMPLETIONS, {"model": "a", "messages": [USER]}, {"x": "y"})
    assert outbound.reachable(chain) is not chain and outbound.request(gpt, "a")[2] == {"x": "y"}
    beta = Outbound(MESSAGES, {"model": "a", "max_tokens": 1, "messages": [USER]},
                    {"anthropic-beta": "context-1m"})  # fmt: skip
    assert "'anthropic-beta'" in refusal(beta.reachable, (Candidates("a", (gpt,)),))
    path, sent, headers = outbound.request(claude, "b")
    assert (path, orjson.loads(sent)["max_tokens"]) == ("/v1/messages", 4096)
    assert headers == {"anthropic-version": "2023-06-01"}


def test_an_azure_deployment_is_addressed_by_deployment_and_api_version() -> None:
    azure = Deployment("az", ProviderKind.AZURE, "https://r.openai.azure.com", None,
                       api_version="2024-10-21")  # fmt: skip
    assert azure.api is ProviderKind.OPENAI
    outbound = Outbound(MESSAGES, {"model": "m", "max_tokens": 3, "messages": [USER]}, {})
    path, sent, _ = outbound.request(azure, "gpt 4o")
    assert path == "/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
    assert orjson.loads(sent)["max_completion_tokens"] == 3


@pytest.mark.parametrize("caller", ["/v1/chat/completions", "/v1/messages"])
def test_the_cache_rebuilds_a_translated_stream_into_the_translated_answer(caller: str) -> None:
    """What the cache stores of a translated stream is what a whole answer would be."""
    body = {"model": "m", "messages": [USER], "max_tokens": 5,
            "stream_options": {"include_usage": True}}  # fmt: skip
    pieces = ["Echo:", " hi"]
    if caller == "/v1/chat/completions":  # an Anthropic deployment answers
        events = _translate(OpenAIChunks(), anthropic_shapes.message_stream(body, pieces, None))
        whole = openai_answer(anthropic_shapes.message(body, pieces, None))
    else:
        events = _translate(AnthropicEvents(), openai_shapes.chat_stream(body, pieces, None))
        whole = anthropic_answer(openai_shapes.chat_completion(body, pieces, None))
    assembler = StreamAssembler(caller)
    for event in events:
        assembler.feed(event)
    rebuilt = assembler.result()
    assert rebuilt is not None and storable(caller, rebuilt)
    if caller == "/v1/messages":
        assert (rebuilt["content"], rebuilt["stop_reason"]) == (whole["content"], "end_turn")
        assert rebuilt["usage"]["output_tokens"] == whole["usage"]["output_tokens"]
    else:
        assert rebuilt["choices"][0]["message"]["content"] == "Echo: hi"
        assert rebuilt["usage"]["prompt_tokens"] == whole["usage"]["prompt_tokens"]
