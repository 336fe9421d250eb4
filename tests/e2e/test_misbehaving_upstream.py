"""Providers (and the proxies in front of them) that misbehave: a redirect, a connection
that breaks after the request was sent, an HTML error page. Through the official SDKs,
against ``tests.support.misbehaving_provider``; the model name picks the behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway, gateway_in_front_of
from tests.support.events import wait_for_events
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "hi"}]


def _openai(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def _seen(provider: ServiceProcess, model: str) -> list[dict[str, str]]:
    """Requests the provider received (on either of its ports) for ``model``."""
    requests = httpx.get(provider.url + "/_seen").json()
    return [r for r in requests if f'"{model}"' in r["body"]]


def test_a_redirect_is_not_followed_and_the_provider_key_stays_home(
    misbehaving_gateway: Gateway, misbehaving_provider: ServiceProcess,
    project_key: tuple[str, str], redis_url: str,
) -> None:  # fmt: skip
    claude = anthropic.Anthropic(base_url=misbehaving_gateway.url, api_key=project_key[1],
                                 max_retries=0)  # fmt: skip
    with claude, pytest.raises(anthropic.InternalServerError) as refused:
        claude.messages.create(model="claude-redirect", max_tokens=5, messages=MESSAGES)
    assert refused.value.status_code == 502 and "redirect" in refused.value.message
    with (
        _openai(misbehaving_gateway, project_key[1]) as gpt,
        pytest.raises(openai.InternalServerError, match="redirect"),
    ):
        gpt.chat.completions.create(model="gpt-redirect", messages=MESSAGES)  # type: ignore[arg-type]
    # Each reached the provider once, and nothing went on to the redirect's target.
    claude_seen = _seen(misbehaving_provider, "claude-redirect")
    gpt_seen = _seen(misbehaving_provider, "gpt-redirect")
    assert [r["path"] for r in claude_seen + gpt_seen] == ["/v1/messages", "/v1/chat/completions"]
    (event,) = wait_for_events(redis_url, misbehaving_gateway.stream,
                               lambda e: e.model == "claude-redirect")  # fmt: skip
    assert event.http_status == 502 and event.status.value == "upstream_error"


def test_a_request_the_provider_received_is_not_sent_again(
    misbehaving_gateway: Gateway, misbehaving_provider: ServiceProcess,
    project_key: tuple[str, str], redis_url: str,
) -> None:  # fmt: skip
    with (
        _openai(misbehaving_gateway, project_key[1]) as gpt,
        pytest.raises(openai.InternalServerError, match="not retried"),
    ):
        gpt.chat.completions.create(model="gpt-drop", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(_seen(misbehaving_provider, "gpt-drop")) == 1
    (event,) = wait_for_events(redis_url, misbehaving_gateway.stream,
                               lambda e: e.model == "gpt-drop")  # fmt: skip
    assert event.http_status == 502 and event.upstream_attempts == 1


def test_an_html_error_page_reaches_the_sdk_as_a_proper_error(
    misbehaving_gateway: Gateway, project_key: tuple[str, str], redis_url: str,
) -> None:  # fmt: skip
    with (
        _openai(misbehaving_gateway, project_key[1]) as gpt,
        pytest.raises(openai.BadRequestError) as refused,
    ):
        gpt.chat.completions.create(model="gpt-html400", messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.code == "upstream_400" and "not JSON" in refused.value.message
    assert isinstance(refused.value.body, dict)
    (event,) = wait_for_events(redis_url, misbehaving_gateway.stream,
                               lambda e: e.model == "gpt-html400")  # fmt: skip
    assert event.http_status == 400 and event.error_type == "upstream_400"


@pytest.fixture(scope="module")
def unreachable_gateway(
    redis_url: str, database_url: str, log_dir: Path, limiter_library: None
) -> Iterator[Gateway]:
    """A gateway whose provider's port has nothing listening."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    yield from gateway_in_front_of(nowhere, redis_url, database_url, log_dir)


def test_a_provider_that_cannot_be_reached_is_tried_again_then_502(
    unreachable_gateway: Gateway, project_key: tuple[str, str], redis_url: str
) -> None:
    with (
        _openai(unreachable_gateway, project_key[1]) as gpt,
        pytest.raises(openai.InternalServerError) as failed,
    ):
        gpt.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert failed.value.code == "upstream_unreachable"
    (event,) = wait_for_events(redis_url, unreachable_gateway.stream,
                               lambda e: e.model == "gpt-4o-mini")  # fmt: skip
    assert event.http_status == 502 and event.upstream_attempts == 3  # nothing was sent: retried


def test_a_key_given_twice_reaches_the_provider_once_as_the_gateway_read_it(
    misbehaving_gateway: Gateway, misbehaving_provider: ServiceProcess,
    project_key: tuple[str, str], redis_url: str,
) -> None:  # fmt: skip
    # The gateway (like most JSON readers) takes the last of a duplicated key; a provider
    # taking the first would answer, bill and fill the cache for a different request.
    raw = (
        b'{"model": "gpt-other", "messages": [{"role": "user", "content": "first",'
        b' "content": "second"}], "model": "gpt-dup-checked"}'
    )
    answered = httpx.post(
        misbehaving_gateway.url + "/v1/chat/completions", content=raw,
        headers={"authorization": f"Bearer {project_key[1]}",
                 "content-type": "application/json"},
    )  # fmt: skip
    assert answered.status_code == 200
    (received,) = _seen(misbehaving_provider, "gpt-dup-checked")
    assert received["body"].count('"model"') == 1 and "gpt-other" not in received["body"]
    assert received["body"].count('"content"') == 1 and '"first"' not in received["body"]
    (event,) = wait_for_events(redis_url, misbehaving_gateway.stream,
                               lambda e: e.model == "gpt-dup-checked")  # fmt: skip
    assert event.status.value == "ok"
