"""The official anthropic SDK, unchanged but for base URL and key, through the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.e2e.conftest import FAKE_PROVIDER_KEY, Gateway
from tests.support.events import wait_for_events
from tests.support.processes import ServiceProcess
from watchllm_shared.contracts import RequestStatus

pytestmark = pytest.mark.e2e

MODEL = "claude-haiku-4-5"


_opened: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=10)
    _opened.append(sdk)
    return sdk


def test_message_answers_and_records_usage(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str, fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    raw = client(gateway, key).messages.with_raw_response.create(
        model=MODEL, max_tokens=64, system="Be brief.",
        messages=[{"role": "user", "content": "Hello Claude"}],
    )  # fmt: skip
    message = raw.parse()
    assert message.content[0].text.startswith("Echo: Hello Claude")
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.prompt_tokens == message.usage.input_tokens > 0
    assert event.completion_tokens == message.usage.output_tokens > 0
    assert event.provider == "anthropic" and event.endpoint == "/v1/messages"
    assert event.cost_usd > 0
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    mine = [r for r in forwarded if "Hello Claude" in str(r.get("body"))][-1]
    assert mine["headers"]["x-api-key"] == FAKE_PROVIDER_KEY
    assert mine["headers"]["anthropic-version"]


def test_streamed_message_through_the_sdk_helper_and_its_usage(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    with client(gateway, key).messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Stream please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text.startswith("Echo: Stream please")
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.stream and event.status is RequestStatus.OK
    assert event.prompt_tokens == final.usage.input_tokens > 0
    assert event.completion_tokens == final.usage.output_tokens > 0


def test_raw_event_stream_is_relayed_event_by_event(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    events = client(gateway, key).messages.create(
        model=MODEL, max_tokens=32, stream=True, messages=[{"role": "user", "content": "hi"}]
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_delta" in kinds and "message_delta" in kinds


def test_errors_arrive_in_anthropic_shape_and_sdk_classes(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        client(gateway, "lgw_" + "y" * 43).messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert bad_key.value.body["type"] == "error"
    assert bad_key.value.body["error"]["type"] == "authentication_error"
    no_max_tokens_raw = httpx.post(
        f"{gateway.url}/v1/messages",
        json={"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": key},
    )
    assert no_max_tokens_raw.status_code == 400
    assert no_max_tokens_raw.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError) as no_max_tokens:
        client(gateway, key).messages.create(
            model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )
    assert "max_tokens" in str(no_max_tokens.value)
    with pytest.raises(anthropic.InternalServerError) as upstream:
        client(gateway, key).messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "[[fake:status=503]]"}]
        )
    assert upstream.value.status_code == 502
    with pytest.raises(anthropic.APIStatusError) as too_big:
        client(gateway, key).messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "z" * 300_000}]
        )
    assert too_big.value.status_code == 413
    assert too_big.value.body["error"]["type"] == "request_too_large"


def test_anthropic_stream_broken_upstream_raises_in_the_sdk(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    with pytest.raises(anthropic.APIStatusError, match="ended the stream"):
        with client(gateway, key).messages.stream(
            model=MODEL, max_tokens=64,
            messages=[{"role": "user", "content": "[[fake:stream_fail_after=3]] go"}],
        ) as stream:  # fmt: skip
            "".join(stream.text_stream)


def test_the_metadata_user_and_properties_are_recorded_and_never_forwarded(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str, fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    raw = client(gateway, key).messages.with_raw_response.create(
        model=MODEL, max_tokens=64, metadata={"user_id": "claude-user-9"},
        messages=[{"role": "user", "content": "tag this claude"}],
        extra_headers={"x-watchllm-property-feature": "chat"},
    )  # fmt: skip
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.properties == {"feature": "chat"} and event.end_user == "claude-user-9"
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    mine = [r for r in forwarded if "tag this claude" in str(r["body"])][-1]
    assert not [name for name in mine["headers"] if name.startswith("x-watchllm")]


def test_a_bad_property_header_is_an_anthropic_bad_request_naming_it(
    gateway: Gateway, project_key: tuple[str, str], fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(gateway, key).messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "never sent 9c1e"}],
            extra_headers={"x-watchllm-property-feature": "x" * 300},
        )  # fmt: skip
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert refused.value.message.startswith(  # the SDK's message holds the body's
        "Error code: 400"
    ) and "Header x-watchllm-property-feature is longer than 256 characters" in str(
        refused.value.message
    )
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    assert not [r for r in forwarded if "never sent 9c1e" in str(r["body"])]
