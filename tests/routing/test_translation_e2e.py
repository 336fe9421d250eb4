"""The official openai and anthropic SDKs through the gateway, each on a deployment that
speaks the other API (the fake provider answers in its own shape): text, a tool call
and its result, an image, streams, usage and cost in the event, upstream errors and
untranslatable parameters in the caller's shape, a fallback across providers, and an
Azure deployment's path, api-version and key."""

from __future__ import annotations

import base64
from decimal import Decimal

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.routing.conftest import AZURE_KEY, Stack
from tests.routing.fakes import clear, received
from tests.support.events import wait_for_events
from watchllm_shared.contracts import RequestCompleted

pytestmark = pytest.mark.e2e

TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
}}  # fmt: skip
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n fake pixel").decode()


def openai_sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key=key, max_retries=0,
                         timeout=20)  # fmt: skip


def anthropic_sdk(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.gateway.url, api_key=key, max_retries=0, timeout=20)


def event_of(stack: Stack, redis_url: str, request_id: str) -> RequestCompleted:
    (event,) = wait_for_events(redis_url, stack.stream, lambda e: e.request_id == request_id)
    return event


def cost(per_million_in: str, per_million_out: str, event: RequestCompleted) -> Decimal:
    spent = Decimal(per_million_in) * event.prompt_tokens
    return (spent + Decimal(per_million_out) * event.completion_tokens) / 1_000_000


def test_openai_sdk_on_an_anthropic_deployment_calls_a_tool_and_is_billed(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    claude = stack.fakes["a"]
    clear(claude)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Define cat"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"text": "cat"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "a small feline"},
        {"role": "user", "content": "And dog? [[fake:tool_call=lookup]]"},
    ]  # fmt: skip
    with openai_sdk(stack, project_key[1]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="claude-haiku-4-5",
            messages=messages,
            tools=[TOOL],
            stop="\n\n",
        )
    answer = raw.parse()
    (call,) = answer.choices[0].message.tool_calls or []
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup"
    assert orjson.loads(call.function.arguments)["text"].startswith("Echo: And dog?")
    (sent,) = received(claude)
    body = sent["body"]
    assert sent["path"] == "/v1/messages" and sent["headers"]["anthropic-version"]
    assert (body["system"], body["max_tokens"], body["stop_sequences"]) == (
        "Be brief.", 4096, ["\n\n"]
    )  # fmt: skip
    assert body["tools"] == [{"name": "lookup", "description": "Look a word up",
                              "input_schema": TOOL["function"]["parameters"]}]  # fmt: skip
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"text": "cat"}}
    ]
    assert body["messages"][2]["content"][0] == {
        "type": "tool_result", "tool_use_id": "call_1", "content": "a small feline"
    }  # fmt: skip
    event = event_of(stack, redis_url, raw.headers["x-request-id"])
    assert answer.usage is not None
    assert (event.prompt_tokens, event.completion_tokens) == (
        answer.usage.prompt_tokens, answer.usage.completion_tokens
    )  # fmt: skip
    assert (event.provider, event.deployment) == ("anthropic", "claude-a")
    assert event.completion_tokens == 24 and event.cost_usd == cost("1", "5", event) > 0


def test_openai_sdk_streams_from_an_anthropic_deployment_with_usage(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    with openai_sdk(stack, project_key[1]) as client:
        with client.chat.completions.with_streaming_response.create(
            model="claude-haiku-4-5", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream across"}],
        ) as raw:  # fmt: skip
            request_id = raw.headers["x-request-id"]
            chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: stream across") and len(chunks) > 20  # word by word
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices
    event = event_of(stack, redis_url, request_id)
    assert event.stream and (event.prompt_tokens, event.completion_tokens) == (
        usage.prompt_tokens, usage.completion_tokens
    )  # fmt: skip
    assert usage.completion_tokens == len(text.split()) and event.cost_usd == cost("1", "5", event)


def test_anthropic_sdk_on_an_openai_deployment_sends_an_image_and_is_billed(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    gpt = stack.fakes["b"]
    clear(gpt)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PIXEL}}  # fmt: skip
    with anthropic_sdk(stack, project_key[1]) as client:
        raw = client.messages.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=50, system="Be brief.", metadata={"user_id": "u-7"},
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}],
        )  # fmt: skip
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text.startswith("Echo: What?")
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    (sent,) = received(gpt)
    body = sent["body"]
    assert sent["path"] == "/v1/chat/completions" and "anthropic-version" not in sent["headers"]
    assert (body["max_completion_tokens"], body["user"]) == (50, "u-7")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            {"type": "text", "text": "What?"}]},
    ]  # fmt: skip
    event = event_of(stack, redis_url, raw.headers["x-request-id"])
    assert (event.prompt_tokens, event.completion_tokens) == (
        message.usage.input_tokens, message.usage.output_tokens
    )  # fmt: skip
    assert event.provider == "openai" and event.cost_usd == cost("0.15", "0.60", event) > 0


def test_anthropic_sdk_streams_a_tool_call_from_an_openai_deployment(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    tool = {"name": "lookup", "input_schema": {"type": "object"}}
    with anthropic_sdk(stack, project_key[1]) as client:
        with client.messages.stream(
            model="gpt-4o-mini", max_tokens=50, tools=[tool],
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            messages=[{"role": "user", "content": "Find it [[fake:tool_call=lookup]]"}],
        ) as stream:  # fmt: skip
            request_id = stream.response.headers["x-request-id"]
            kinds = [event.type for event in stream]
            message = stream.get_final_message()
    (use,) = message.content
    assert use.type == "tool_use" and use.name == "lookup"
    assert use.input["text"].startswith("Echo: Find it")
    assert message.stop_reason == "tool_use"
    assert kinds.count("input_json") == 3 and kinds[-1] == "message_stop"  # piece by piece
    sent = received(stack.fakes["b"])[-1]["body"]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    assert sent["stream_options"] == {"include_usage": True}
    event = event_of(stack, redis_url, request_id)
    assert message.usage.input_tokens > 0 and (event.prompt_tokens, event.completion_tokens) == (
        message.usage.input_tokens, message.usage.output_tokens
    )  # fmt: skip


def test_errors_come_back_in_the_callers_shape(stack: Stack, project_key: tuple[str, str]) -> None:
    claude, gpt = stack.fakes["a"], stack.fakes["b"]
    clear(claude, gpt)
    with openai_sdk(stack, project_key[1]) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="claude-haiku-4-5", messages=[
                {"role": "user", "content": "[[fake:status=404]]"}])  # fmt: skip
        assert missing.value.body["message"] == "fake error: status 404 by directive"
        assert missing.value.code == "not_found_error"
        with pytest.raises(openai.BadRequestError) as refused:  # nothing to send upstream
            client.chat.completions.create(
                model="claude-haiku-4-5", logprobs=True, messages=[{"role": "user", "content": "x"}]
            )
    assert refused.value.code == "untranslatable_parameter"
    assert "'logprobs' cannot be sent to the model's Anthropic deployment" in refused.value.message
    with anthropic_sdk(stack, project_key[1]) as client:
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[
                {"role": "user", "content": "[[fake:status=400]]"}])  # fmt: skip
        expected = {"type": "invalid_request_error",
                    "message": "fake error: status 400 by directive"}  # fmt: skip
        assert bad.value.body == {"type": "error", "error": expected}
        with pytest.raises(anthropic.BadRequestError) as thinking:
            client.messages.create(model="gpt-4o-mini", max_tokens=2000, messages=[
                {"role": "user", "content": "hi"}],
                thinking={"type": "enabled", "budget_tokens": 1024})  # fmt: skip
        assert "'thinking' cannot be sent to the model's OpenAI deployment" in str(thinking.value)
    assert len(received(claude)) == 1 and len(received(gpt)) == 1  # the refused never left


def test_a_fallback_crosses_from_an_openai_deployment_to_an_anthropic_one(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    claude, failing = stack.fakes["a"], stack.fakes["failing"]
    clear(claude, failing)
    with openai_sdk(stack, project_key[1]) as client:
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4.1-mini", stream=True, messages=[{"role": "user", "content": "fall"}]
        ) as raw:
            request_id = raw.headers["x-request-id"]
            chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Echo: fall")
    assert chunks[0].model == "claude-haiku-4-5"
    assert [r["body"]["model"] for r in received(failing)] == ["gpt-4.1-mini"]
    (sent,) = received(claude)
    assert sent["path"] == "/v1/messages" and sent["body"]["model"] == "claude-haiku-4-5"
    event = event_of(stack, redis_url, request_id)
    assert (event.fallback_model, event.deployment, event.upstream_attempts) == (
        "claude-haiku-4-5", "claude-a", 2
    )  # fmt: skip
    assert event.completion_tokens == 24 and event.cost_usd == cost("1", "5", event)  # haiku's


def test_an_azure_deployment_gets_its_path_api_version_and_key(
    stack: Stack, project_key: tuple[str, str], redis_url: str
) -> None:
    fake = stack.fakes["a"]
    clear(fake)
    with openai_sdk(stack, project_key[1]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "azure"}]
        )
    assert raw.parse().choices[0].message.content.startswith("Echo: azure")
    with anthropic_sdk(stack, project_key[1]) as claude_client:  # translated, then Azure
        message = claude_client.messages.create(
            model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "both"}]
        )
    assert message.content[0].text.startswith("Echo: both")
    sent = httpx.get(f"{fake.url}/_fake/requests", timeout=10).json()
    assert [(r["path"], r["query"]) for r in sent] == [
        ("/openai/deployments/prod-4o/chat/completions", "api-version=2024-10-21")
    ] * 2
    assert all(r["headers"]["api-key"] == AZURE_KEY for r in sent)
    assert not any("authorization" in r["headers"] for r in sent)
    event = event_of(stack, redis_url, raw.headers["x-request-id"])
    assert (event.provider, event.deployment) == ("azure", "azure-a")
    assert event.cost_usd == cost("2.50", "10", event) > 0
