"""The fake OpenAI/Anthropic provider: wire shapes, token rule, directives, request log,
driven in-process through ``httpx.ASGITransport`` (the official SDKs against a real
server are in ``test_fake_provider_server``).
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.unit.fake_provider_requests import CHAT, MESSAGES, user
from watchllm_shared.fake_provider import (
    FakeProvider,
    FakeProviderConfig,
    create_fake_provider,
)
from watchllm_shared.fake_provider.__main__ import _parse_args

pytestmark = pytest.mark.unit


def asgi_client(app: FakeProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fake")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(create_fake_provider()) as http:
        yield http


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each event in an SSE body."""
    events: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        name = next((line[6:].strip() for line in lines if line.startswith("event:")), None)
        data = "\n".join(line[5:].strip() for line in lines if line.startswith("data:"))
        events.append((name, data))
    return events


# --- OpenAI chat completions -------------------------------------------------------


async def test_openai_chat_completion_shape_and_token_rule(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "gpt-4o-mini"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Echo: Hello there world lorem")
    assert choice["finish_reason"] == "stop"
    # (3 + 3) words + 3 per message; the reply is exactly reply_words (24) words.
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36}
    assert len(choice["message"]["content"].split()) == 24


async def test_reply_is_deterministic_and_echo_is_cut(client: httpx.AsyncClient) -> None:
    long_text = "word " * 30
    request = {"model": "m", "messages": [user(long_text)]}
    first = (await client.post("/v1/chat/completions", json=request)).json()
    second = (await client.post("/v1/chat/completions", json=request)).json()
    content = first["choices"][0]["message"]["content"]
    assert content == second["choices"][0]["message"]["content"]
    assert content.startswith("Echo: " + ("word " * 8).strip() + " lorem")
    assert first["usage"]["prompt_tokens"] == 33


async def test_reply_words_config_and_content_parts() -> None:
    parts = [
        {"type": "text", "text": "one two"},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "three"},
    ]
    async with asgi_client(create_fake_provider(FakeProviderConfig(reply_words=3))) as http:
        body = (
            await http.post("/v1/chat/completions", json={"model": "m", "messages": [user(parts)]})
        ).json()
    assert body["choices"][0]["message"]["content"] == "Echo: one two"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


async def test_openai_stream_with_usage(client: httpx.AsyncClient) -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await client.post("/v1/chat/completions", json=request)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 24, "total_tokens": 36}
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks[:-1])
    plain = (await client.post("/v1/chat/completions", json=CHAT)).json()
    assert text == plain["choices"][0]["message"]["content"]


async def test_openai_stream_without_usage(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = sse_events(response.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [orjson.loads(data) for _, data in events[:-1]]
    assert len(chunks) == 1 + 24 + 1
    assert all("usage" not in chunk and chunk["choices"] for chunk in chunks)


# --- Anthropic messages ------------------------------------------------------------


async def test_anthropic_message_shape_with_system(client: httpx.AsyncClient) -> None:
    system = [{"type": "text", "text": "Be brief."}]
    response = await client.post("/v1/messages", json={**MESSAGES, "system": system})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("msg_")
    assert body["type"] == "message"
    assert body["role"] == "assistant"
    assert body["model"] == "claude-3-5-haiku-latest"
    assert body["content"][0]["type"] == "text"
    assert body["content"][0]["text"].startswith("Echo: Hello there world")
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    # user 3 words + 3, system 2 words + 3 (counts as one more message).
    assert body["usage"] == {"input_tokens": 11, "output_tokens": 24}


async def test_anthropic_stream_event_sequence(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json={**MESSAGES, "stream": True})
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[3:-3] == ["content_block_delta"] * 24
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    payloads = [orjson.loads(data) for _, data in events]
    assert all(payload["type"] == name for payload, name in zip(payloads, names, strict=True))
    assert payloads[0]["message"]["usage"] == {"input_tokens": 6, "output_tokens": 1}
    assert payloads[-2]["delta"]["stop_reason"] == "end_turn"
    assert payloads[-2]["usage"] == {"output_tokens": 24}
    text = "".join(payload["delta"]["text"] for payload in payloads[3:-3])
    assert text.startswith("Echo: Hello there world") and len(text.split()) == 24


async def test_anthropic_requires_max_tokens(client: httpx.AsyncClient) -> None:
    request = {key: value for key, value in MESSAGES.items() if key != "max_tokens"}
    response = await client.post("/v1/messages", json=request)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


# --- Errors, directives, failures --------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
async def test_malformed_json_is_400_in_provider_shape(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    openai_error = await client.post("/v1/chat/completions", content=raw)
    assert openai_error.status_code == 400
    assert openai_error.json()["error"]["type"] == "invalid_request_error"
    anthropic_error = await client.post("/v1/messages", content=raw)
    assert anthropic_error.status_code == 400
    assert anthropic_error.json()["type"] == "error"


async def test_status_directive_in_both_shapes(client: httpx.AsyncClient) -> None:
    request = {"model": "m", "messages": [user("hi [[fake:status=429]]")]}
    response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert error["message"]
    response = await client.post(
        "/v1/messages", json={**MESSAGES, "messages": [user("hi [[fake:status=529]]")]}
    )
    assert response.status_code == 529
    assert response.json()["error"]["type"] == "overloaded_error"


async def test_directives_come_from_the_last_user_message(client: httpx.AsyncClient) -> None:
    messages = [user("[[fake:status=500]]"), {"role": "assistant", "content": "ok"}, user("hi")]
    response = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages})
    assert response.status_code == 200


async def test_fail_times_counts_per_key(client: httpx.AsyncClient) -> None:
    def request(key: str) -> dict[str, Any]:
        return {**MESSAGES, "messages": [user(f"retry me [[fake:fail_times=2:key={key}]]")]}

    statuses = [
        (await client.post("/v1/messages", json=request("a"))).status_code for _ in range(4)
    ]
    assert statuses == [500, 500, 200, 200]
    assert (await client.post("/v1/messages", json=request("b"))).status_code == 500
    failed = await client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [user("[[fake:fail_times=1:key=c]]")]},
    )
    assert failed.json()["error"]["type"] == "server_error"


async def test_delay_directive_and_default_delay(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    request = {"model": "m", "messages": [user("slow [[fake:delay=0.2]]")]}
    assert (await client.post("/v1/chat/completions", json=request)).status_code == 200
    assert time.monotonic() - started >= 0.2
    config = FakeProviderConfig(default_delay_seconds=0.15, chunk_delay_seconds=0.01)
    async with asgi_client(create_fake_provider(config)) as http:
        started = time.monotonic()
        response = await http.post("/v1/chat/completions", json={**CHAT, "stream": True})
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.15 + 0.01 * (len(sse_events(response.text)) - 1)


@pytest.mark.parametrize(
    "text",
    ["[[fake:status=200]]", "[[fake:nope=1]]", "[[fake:fail_times=2]]", "[[fake:delay=x",
     "[[fake:tool_call=a-b]]"],
)  # fmt: skip
async def test_bad_directive_is_400(client: httpx.AsyncClient, text: str) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": [user(text)]}
    )
    assert response.status_code == 400
    assert "directive" in response.json()["error"]["message"]


async def test_tool_call_directive_in_both_shapes_whole_and_streamed(
    client: httpx.AsyncClient,
) -> None:
    ask = user("Find [[fake:tool_call=lookup]]")
    chat = (await client.post("/v1/chat/completions", json={**CHAT, "messages": [ask]})).json()
    (call,) = chat["choices"][0]["message"]["tool_calls"]
    assert (
        chat["choices"][0]["finish_reason"] == "tool_calls" and call["function"]["name"] == "lookup"
    )
    arguments = orjson.loads(call["function"]["arguments"])
    assert arguments["text"].startswith("Echo: Find")
    message = (await client.post("/v1/messages", json={**MESSAGES, "messages": [ask]})).json()
    assert message["stop_reason"] == "tool_use" and message["content"][0]["input"] == arguments
    streamed = await client.post(
        "/v1/messages", json={**MESSAGES, "messages": [ask], "stream": True}
    )
    pieces = [orjson.loads(d)["delta"]["partial_json"] for n, d in sse_events(streamed.text)
              if n == "content_block_delta"]  # fmt: skip
    assert len(pieces) == 3 and orjson.loads("".join(pieces)) == arguments
    chunks = await client.post("/v1/chat/completions",
                               json={**CHAT, "messages": [ask], "stream": True})  # fmt: skip
    deltas = [orjson.loads(d)["choices"][0]["delta"] for _, d in sse_events(chunks.text)[:-1]]
    assert (
        "".join(t["function"]["arguments"] for d in deltas for t in d.get("tool_calls", ()))
        == (call["function"]["arguments"])
    )


async def test_azure_paths_need_an_api_version(client: httpx.AsyncClient) -> None:
    path = "/openai/deployments/prod-4o/chat/completions"
    served = await client.post(f"{path}?api-version=2024-10-21", json=CHAT)
    assert served.status_code == 200 and served.json()["object"] == "chat.completion"
    assert (await client.post(path, json=CHAT)).status_code == 404
    logged = (await client.get("/_fake/requests")).json()
    assert [(r["path"], r["query"]) for r in logged] == [
        (path, "api-version=2024-10-21"),
        (path, ""),
    ]


async def test_error_rate_is_seeded() -> None:
    async def statuses(config: FakeProviderConfig) -> list[int]:
        async with asgi_client(create_fake_provider(config)) as http:
            return [
                (await http.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(20)
            ]

    half = FakeProviderConfig(error_rate=0.5, error_status=503, seed=7)
    first = await statuses(half)
    assert first == await statuses(half)
    assert set(first) == {200, 503}
    assert set(await statuses(FakeProviderConfig(error_rate=1.0))) == {500}


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/chat/completions")).status_code == 405
    assert (await client.get("/v1/messages")).json()["type"] == "error"
    missing = await client.post("/v1/nothing", json={})
    assert missing.status_code == 404 and "error" in missing.json()
    too_big = create_fake_provider(FakeProviderConfig(max_body_bytes=10))
    async with asgi_client(too_big) as http:
        assert (await http.post("/v1/chat/completions", json=CHAT)).status_code == 413


def test_config_validation_and_cli_args() -> None:
    with pytest.raises(ValueError):
        FakeProviderConfig(error_rate=1.5)
    with pytest.raises(ValueError):
        FakeProviderConfig(reply_words=0)
    host, port, config = _parse_args(["--port", "9100", "--delay", "0.5", "--reply-words", "5"])
    assert (host, port) == ("127.0.0.1", 9100)
    assert config == FakeProviderConfig(default_delay_seconds=0.5, reply_words=5)


# --- Embeddings, models, health, request log ---------------------------------------


async def test_embeddings_float_and_base64(client: httpx.AsyncClient) -> None:
    single = (await client.post("/v1/embeddings", json={"model": "e", "input": "a b c"})).json()
    assert single["object"] == "list" and single["model"] == "e"
    assert single["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vector = single["data"][0]["embedding"]
    assert len(vector) == 8 and abs(sum(value * value for value in vector) - 1.0) < 1e-9
    many = (
        await client.post(
            "/v1/embeddings",
            json={"model": "e", "input": ["a b c", "d"], "encoding_format": "base64"},
        )
    ).json()
    assert [item["index"] for item in many["data"]] == [0, 1]
    decoded = struct.unpack("<8f", base64.b64decode(many["data"][0]["embedding"]))
    assert decoded == pytest.approx(vector, abs=1e-6)
    assert many["usage"]["prompt_tokens"] == 4
    bad = await client.post("/v1/embeddings", json={"model": "e", "input": [1, 2]})
    assert bad.status_code == 400


async def test_health_and_models(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    models = (await client.get("/v1/models")).json()
    assert models["object"] == "list"
    assert "gpt-4o-mini" in [model["id"] for model in models["data"]]


async def test_request_log_records_headers_and_body(client: httpx.AsyncClient) -> None:
    request = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    await client.post(
        "/v1/chat/completions?x=1", json=request, headers={"Authorization": "Bearer sk-provider"}
    )
    await client.get("/health")
    log = (await client.get("/_fake/requests")).json()
    assert len(log) == 1
    entry = log[0]
    assert (entry["method"], entry["path"], entry["query"]) == (
        "POST",
        "/v1/chat/completions",
        "x=1",
    )
    assert entry["headers"]["authorization"] == "Bearer sk-provider"
    assert entry["body"]["stream_options"] == {"include_usage": True}
    assert (await client.delete("/_fake/requests")).status_code == 200
    assert (await client.get("/_fake/requests")).json() == []


async def test_request_log_is_bounded() -> None:
    app = create_fake_provider(FakeProviderConfig(max_recorded_requests=2))
    async with asgi_client(app) as http:
        for index in range(3):
            await http.post("/v1/embeddings", json={"model": "e", "input": str(index)})
        await http.post("/v1/messages", content=b"oops")
        log = (await http.get("/_fake/requests")).json()
    assert [entry["body"] for entry in log] == [{"model": "e", "input": "2"}, "oops"]
