"""The fake provider behind a real uvicorn server (uvloop + httptools, as ``serve`` runs
it) on a free loopback port in a background thread: the official SDKs against it, and
streams it drops on purpose."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import uvicorn

from tests.unit.fake_provider_requests import MESSAGES, USER, user
from watchllm_shared.fake_provider import FakeProvider, create_fake_provider

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, FakeProvider]]:
    """A real uvicorn server running the fake; yields its base URL and the app."""
    app = create_fake_provider()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", access_log=False, log_level="warning", lifespan="on"
    )
    uv_server = uvicorn.Server(config)
    thread = threading.Thread(target=uv_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv_server.started:
        assert time.monotonic() < deadline, "fake provider did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    uv_server.should_exit = True
    thread.join(10)
    sock.close()


# --- Real server: official SDKs and dropped streams --------------------------------


async def test_openai_sdk(server: tuple[str, FakeProvider]) -> None:
    url, app = server
    app.recorder.clear()
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0) as sdk:
        completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=[USER])
        assert completion.choices[0].message.content is not None
        assert completion.usage is not None and completion.usage.completion_tokens == 24
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini",
            messages=[USER],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces: list[str] = []
        usage = None
        async for chunk in stream:
            pieces.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage
        assert "".join(pieces) == completion.choices[0].message.content
        assert usage is not None and usage.prompt_tokens == 6
        embedding = await sdk.embeddings.create(model="text-embedding-3-small", input="hi")
        assert len(embedding.data[0].embedding) == 8
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model="m", messages=[user("[[fake:status=429]]")])
    assert app.recorder.snapshot()[0]["headers"]["authorization"] == "Bearer sk-test"


async def test_anthropic_sdk(server: tuple[str, FakeProvider]) -> None:
    url, app = server
    async with anthropic.AsyncAnthropic(base_url=url, api_key="sk-ant-test", max_retries=0) as sdk:
        message = await sdk.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hi"}],
        )
        assert message.content[0].type == "text" and message.usage.output_tokens == 24
        async with sdk.messages.stream(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hi"}],
        ) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
        assert text == message.content[0].text
        assert final.usage.output_tokens == 24 and final.stop_reason == "end_turn"
        raw = await sdk.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=64,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
        kinds = [event.type async for event in raw]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        with pytest.raises(anthropic.InternalServerError):
            await sdk.messages.create(
                model="c",
                max_tokens=8,
                messages=[{"role": "user", "content": "[[fake:status=529]]"}],
            )
    # Depending on its version the SDK sends the key as x-api-key or as a bearer token.
    headers = app.recorder.snapshot()[-1]["headers"]
    assert "sk-ant-test" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])


@pytest.mark.parametrize(
    ("path", "request_body"),
    [
        (
            "/v1/chat/completions",
            {"model": "m", "stream": True, "messages": [user("x [[fake:stream_fail_after=3]]")]},
        ),
        (
            "/v1/messages",
            {**MESSAGES, "stream": True, "messages": [user("x [[fake:stream_fail_after=3]]")]},
        ),
    ],
)
async def test_stream_fail_after_drops_the_connection(
    server: tuple[str, FakeProvider], path: str, request_body: dict[str, Any]
) -> None:
    url, _ = server
    received = b""
    async with httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream("POST", path, json=request_body) as response:
                assert response.status_code == 200
                async for part in response.aiter_bytes():
                    received += part
    assert received.count(b"\n\n") == 3
