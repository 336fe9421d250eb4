"""Streams whose framing is legal but unusual, through the official SDKs: split or bare
CR line endings, a ``null`` usage, an upstream slow to end its body after the last
event. The caller gets the answer and the event records it as the success it is."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway
from tests.support.events import wait_for_events
from watchllm_shared.contracts import RequestCompleted, RequestStatus

pytestmark = pytest.mark.e2e

_opened: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def _openai_stream(
    gateway: Gateway, key: str, model: str, include_usage: bool
) -> tuple[list[Any], str]:
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=10)
    _opened.append(sdk)
    options: Any = {"stream_options": {"include_usage": True}} if include_usage else {}
    with sdk.chat.completions.with_streaming_response.create(
        model=model, stream=True, messages=[{"role": "user", "content": "hi"}], **options
    ) as raw:
        request_id = raw.headers["x-request-id"]
        chunks = list(raw.parse())
    return chunks, request_id


def _event(gateway: Gateway, redis_url: str, request_id: str) -> RequestCompleted:
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    return event


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("model", ["gpt-crlf", "gpt-cr"])
def test_cr_and_split_crlf_line_endings_keep_events_apart(
    misbehaving_gateway: Gateway,
    project_key: tuple[str, str],
    redis_url: str,
    model: str,
    include_usage: bool,
) -> None:
    chunks, request_id = _openai_stream(misbehaving_gateway, project_key[1], model, include_usage)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
        assert all(c.choices for c in chunks[:-1])
    else:  # the gateway's own usage chunk is not shown to a caller who did not ask
        assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    event = _event(misbehaving_gateway, redis_url, request_id)
    assert event.status is RequestStatus.OK and event.http_status == 200
    assert (event.prompt_tokens, event.completion_tokens) == (11, 7)


def test_a_null_usage_in_message_start_is_tolerated(
    misbehaving_gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    sdk = anthropic.Anthropic(
        base_url=misbehaving_gateway.url, api_key=project_key[1], max_retries=0, timeout=10
    )
    _opened.append(sdk)
    with sdk.messages.with_streaming_response.create(
        model="claude-nullusage", max_tokens=16, stream=True,
        messages=[{"role": "user", "content": "hi"}],
    ) as raw:  # fmt: skip
        request_id = raw.headers["x-request-id"]
        events = list(raw.parse())
    text = "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "Hi" and events[-1].type == "message_stop"
    event = _event(misbehaving_gateway, redis_url, request_id)
    assert event.status is RequestStatus.OK and event.http_status == 200
    assert event.completion_tokens == 5 and event.prompt_tokens == 0


@pytest.mark.parametrize("include_usage", [False, True])
def test_an_upstream_slow_to_end_after_done_is_still_a_success(
    misbehaving_gateway: Gateway, project_key: tuple[str, str], redis_url: str, include_usage: bool
) -> None:
    chunks, request_id = _openai_stream(
        misbehaving_gateway, project_key[1], "gpt-lagdone", include_usage
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    event = _event(misbehaving_gateway, redis_url, request_id)
    assert event.status is RequestStatus.OK and event.http_status == 200
    assert (event.prompt_tokens, event.completion_tokens) == (11, 7)
    assert event.error_type is None
