"""The official openai SDK, unchanged but for base URL and key, through the gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from tests.e2e.conftest import FAKE_PROVIDER_KEY, Gateway
from tests.support.events import wait_for_events
from tests.support.processes import ServiceProcess
from watchllm_shared.accounts import AccountStore
from watchllm_shared.accounts.keys import hash_key
from watchllm_shared.contracts import RequestStatus

pytestmark = pytest.mark.e2e


_opened: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=10)
    _opened.append(sdk)
    return sdk


def test_chat_completion_answers_and_records_tokens_and_cost(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is WatchLLM?"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Echo: What is WatchLLM?")
    assert raw.headers["x-watchllm-cache"] == "bypass"
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.OK and event.http_status == 200
    assert event.prompt_tokens == completion.usage.prompt_tokens > 0
    assert event.completion_tokens == completion.usage.completion_tokens > 0
    expected = Decimal("0.15") * event.prompt_tokens + Decimal("0.60") * event.completion_tokens
    assert event.cost_usd == expected / 1_000_000
    assert event.model == "gpt-4o-mini" and event.provider == "openai" and not event.stream
    assert event.latency_ms >= event.upstream_latency_ms > 0


def test_streamed_completion_arrives_in_chunks_and_its_usage_is_billed(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str, fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    with client(gateway, key).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "stream me"}]
    ) as raw:
        request_id = raw.headers["x-request-id"]
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Echo: stream me") and len(chunks) > 3
    # The gateway asked the upstream for usage, but this caller did not: no usage chunk.
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.stream and event.status is RequestStatus.OK
    assert event.completion_tokens == len(text.split()) and event.prompt_tokens > 0
    assert event.cost_usd > 0 and event.ttfb_ms is not None and event.ttfb_ms <= event.latency_ms
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    mine = [r for r in forwarded if "stream me" in str(r.get("body"))]
    assert mine and mine[-1]["body"]["stream_options"] == {"include_usage": True}
    assert mine[-1]["headers"]["authorization"] == f"Bearer {FAKE_PROVIDER_KEY}"


def test_caller_asking_for_stream_usage_gets_the_usage_chunk(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    stream = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count me"}],
    )  # fmt: skip
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_bad_and_missing_keys_are_authentication_errors(gateway: Gateway, redis_url: str) -> None:
    with pytest.raises(openai.AuthenticationError) as bad:
        client(gateway, "lgw_" + "x" * 43).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert bad.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "sk-not-a-watchllm-key").models.list()
    request_id = bad.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.http_status == 401 and event.project_id is None
    assert event.status is RequestStatus.CLIENT_ERROR and event.error_type == "invalid_api_key"


async def test_a_revoked_key_is_refused_within_a_second(
    gateway: Gateway, project_key: tuple[str, str], account_store: AccountStore
) -> None:
    _, key = project_key
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    await sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a"}])
    grant = await account_store.find_grant(hash_key(key))
    await account_store.revoke_key(grant.key_id)
    revoked_at = time.monotonic()
    while True:
        # Timed when sent: a request sent in time may take a slow machine long to answer.
        sent_after = time.monotonic() - revoked_at
        try:
            await sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "b"}]
            )
        except openai.PermissionDeniedError as refused:
            assert refused.code == "key_revoked"
            break
        assert sent_after < 1.0, f"a request sent {sent_after:.2f} s after the revocation passed"
        await asyncio.sleep(0.02)
    await sdk.close()


def test_malformed_json_and_bad_schema_are_400_in_openai_shape(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        content=b'{"model": "gpt-4o", "messages": [',
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    with pytest.raises(openai.BadRequestError) as missing:
        client(gateway, key).chat.completions.create(model="gpt-4o", messages=[])
    assert missing.value.code == "invalid_messages"


def test_oversized_body_is_413(gateway: Gateway, project_key: tuple[str, str]) -> None:
    _, key = project_key
    with pytest.raises(openai.APIStatusError) as too_big:
        client(gateway, key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 300_000}]
        )
    assert too_big.value.status_code == 413
    assert too_big.value.code == "request_too_large"


def test_unknown_models_and_models_of_the_other_protocol(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    with pytest.raises(openai.NotFoundError) as unknown:
        client(gateway, key).chat.completions.create(
            model="llama-9000", messages=[{"role": "user", "content": "hi"}]
        )
    assert unknown.value.code == "model_not_found"
    # Chat is translated for an Anthropic deployment (``translation``); embeddings are not.
    with pytest.raises(openai.BadRequestError) as wrong_endpoint:
        client(gateway, key).embeddings.create(model="claude-haiku-4-5", input="hi")
    assert "/v1/messages" in wrong_endpoint.value.message


async def test_a_project_limited_to_some_models_gets_403_for_others(
    gateway: Gateway, project_key: tuple[str, str], account_store: AccountStore
) -> None:
    name, key = project_key
    await account_store.set_allowed_models(name, ["gpt-4o-mini"])
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    await asyncio.sleep(0.6)  # the key cache holds grants for 0.5 s
    with pytest.raises(openai.PermissionDeniedError) as forbidden:
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert forbidden.value.code == "model_not_allowed"
    ok = await sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    assert ok.choices[0].message.content
    models = await sdk.models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]
    await sdk.close()


def test_upstream_500_is_retried_then_502(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway, key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "boom [[fake:status=500]]"}]
        )
    assert failed.value.status_code == 502 and failed.value.code == "upstream_error"
    request_id = failed.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.UPSTREAM_ERROR and event.upstream_attempts == 3


def test_a_transient_upstream_failure_is_retried_invisibly(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "[[fake:fail_times=1:key=t1]] hi"}]
    )
    assert raw.status_code == 200
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.OK and event.upstream_attempts == 2


def test_upstream_timeout_is_504(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    with pytest.raises(openai.APIStatusError) as timed_out:
        client(gateway, key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "slow [[fake:delay=3]]"}]
        )
    assert timed_out.value.status_code == 504 and timed_out.value.code == "upstream_timeout"
    request_id = timed_out.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.UPSTREAM_TIMEOUT and event.upstream_attempts == 1


def test_upstream_rejecting_the_provider_key_is_a_502_not_the_callers_401(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    with pytest.raises(openai.InternalServerError) as failed:
        client(gateway, key).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[[fake:status=401]]"}]
        )
    assert failed.value.status_code == 502 and failed.value.code == "upstream_auth_failed"


def test_a_stream_broken_by_the_upstream_raises_in_the_sdk(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    with client(gateway, key).chat.completions.with_streaming_response.create(
        model="gpt-4o", stream=True,
        messages=[{"role": "user", "content": "[[fake:stream_fail_after=3]] tell me"}],
    ) as raw:  # fmt: skip
        request_id = raw.headers["x-request-id"]
        with pytest.raises(openai.APIError, match="ended the stream"):
            list(raw.parse())
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.status is RequestStatus.UPSTREAM_ERROR and event.stream


def test_embeddings_are_forwarded_and_billed(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    _, key = project_key
    raw = client(gateway, key).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one two three", "four"]
    )
    result = raw.parse()
    assert len(result.data) == 2 and result.usage.prompt_tokens > 0
    request_id = raw.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id == request_id)
    assert event.endpoint == "/v1/embeddings" and event.prompt_tokens == result.usage.prompt_tokens
    assert event.cost_usd == Decimal("0.02") * event.prompt_tokens / 1_000_000


def test_every_answer_carries_the_rate_limit_headers_sdks_read(
    gateway: Gateway, project_key: tuple[str, str]
) -> None:
    _, key = project_key
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "limits?"}]
    )
    assert raw.headers["x-ratelimit-limit-requests"] == "100000"  # PRO plan, per UTC day
    assert int(raw.headers["x-ratelimit-remaining-requests"]) == 99_999
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")


def test_properties_and_the_end_user_are_recorded_and_never_forwarded(
    gateway: Gateway, project_key: tuple[str, str], redis_url: str, fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    tags = {"x-watchllm-property-Feature": "summary", "x-watchllm-property-tier": "gold plan"}
    sdk = client(gateway, key)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", user="body-user", extra_headers=tags,
        messages=[{"role": "user", "content": "tag me please"}],
    )  # fmt: skip
    header_user = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", user="body-user", extra_headers={"x-watchllm-user": "header-user"},
        messages=[{"role": "user", "content": "who am I"}],
    )  # fmt: skip
    ids = {raw.headers["x-request-id"], header_user.headers["x-request-id"]}
    events = wait_for_events(redis_url, gateway.stream, lambda e: e.request_id in ids, count=2)
    by_id = {event.request_id: event for event in events}
    tagged = by_id[raw.headers["x-request-id"]]
    assert tagged.properties == {"feature": "summary", "tier": "gold plan"}
    assert tagged.end_user == "body-user"
    assert by_id[header_user.headers["x-request-id"]].end_user == "header-user"
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    mine = [
        r for r in forwarded if "tag me please" in str(r["body"]) or "who am I" in str(r["body"])
    ]
    assert len(mine) == 2
    assert all(not name.startswith("x-watchllm") for r in mine for name in r["headers"])
    assert {r["body"]["user"] for r in mine} == {"body-user"}  # the provider's field, unchanged


def test_a_bad_property_header_is_a_bad_request_naming_it_and_nothing_is_sent(
    gateway: Gateway, project_key: tuple[str, str], fake_provider: ServiceProcess
) -> None:
    _, key = project_key
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway, key).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "never sent 7f3a"}],
            extra_headers={"x-watchllm-property-bad!name": "v"},
        )  # fmt: skip
    assert refused.value.code == "invalid_property_header"
    assert "Header x-watchllm-property-bad!name must name a property" in refused.value.message
    forwarded = httpx.get(f"{fake_provider.url}/_fake/requests").json()
    assert not [r for r in forwarded if "never sent 7f3a" in str(r["body"])]
