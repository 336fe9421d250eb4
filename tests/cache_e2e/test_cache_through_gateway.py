"""The cache through a real gateway and a real cache service (real model, qdrant-edge),
with the official SDKs: exact and semantic hits, isolation, scope, streaming replay,
opt-outs, TTL, and the cache service dying mid-traffic."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import redis
from click.testing import CliRunner

from tests.conftest import unique
from tests.e2e.conftest import gateway_env
from tests.support.cache_streams import store_done, store_id
from tests.support.events import wait_for_events
from tests.support.processes import (
    CACHE_KEY_SECRET,
    ServiceProcess,
    start_cache_service,
    start_gateway,
)
from watchllm_shared.cli.main import cli
from watchllm_shared.contracts import CacheOutcome
from watchllm_shared.contracts.cache_keys import (
    canonical_request,
    exact_cache_key,
    project_of_exact_key,
)
from watchllm_shared.contracts.limits import limits_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass
class Stack:
    gateway: ServiceProcess
    cache: ServiceProcess
    stream: str
    fake: ServiceProcess


@pytest.fixture(scope="module")
def stack(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory, limiter_library: None,
) -> Iterator[Stack]:  # fmt: skip
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_CACHE_TIMEOUT_SECONDS="2",
    )  # fmt: skip
    cache = start_cache_service(
        {**env, "WATCHLLM_QDRANT_EDGE_PATH": str(tmp_path_factory.mktemp("cache") / "qdrant")},
        log_dir,
    )
    gateway = start_gateway(env, log_dir)
    yield Stack(gateway, cache, stream, fake_provider)
    gateway.stop()
    cache.stop()


def new_key(database_url: str) -> str:
    """A fresh project and key, made the way an operator does (the CLI)."""
    name, env = unique("cache"), {"DATABASE_URL": database_url}
    runner = CliRunner()
    assert runner.invoke(cli, ["projects", "create", name, "--plan", "PRO"], env=env).exit_code == 0
    created = runner.invoke(cli, ["keys", "create", "--project", name, "--quiet"], env=env)
    assert created.exit_code == 0, created.output
    return created.output.strip()


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.gateway.url}/v1", api_key=key, max_retries=0)


def ask(client: openai.OpenAI, text: str, **extra: object) -> tuple[str, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        **extra,  # type: ignore[arg-type]
    )
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def until_stored(redis_url: str, headers: dict[str, str], timeout: float = 120) -> None:
    """The cache service stores after the answer: wait until the answer's store is done,
    the exact entry written and the question indexed (its message acknowledged), so a
    rephrasing can be a semantic hit. The deadline only bounds a failure: the cache
    service also works through stores queued before this one."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    entry_id: bytes | None = None
    try:
        while True:
            entry_id = entry_id or store_id(client, headers["x-request-id"])
            if entry_id is not None and store_done(client, entry_id):
                break
            assert time.monotonic() < deadline, f"answer never stored (store {entry_id!r})"
            time.sleep(0.05)
    finally:
        client.close()


def test_exact_repeat_is_served_from_cache_and_records_the_saving(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key = new_key(database_url)
    with sdk(stack, key) as client:
        first, headers = ask(client, "Name three primary colours.")
        assert headers["x-watchllm-cache"] == "miss"
        until_stored(redis_url, headers)
        second, repeat = ask(client, "Name three primary colours.")
    assert second == first and repeat["x-watchllm-cache"] == "hit"
    assert "x-watchllm-cache-similarity" not in repeat
    (event,) = wait_for_events(redis_url, stack.stream,
                               lambda e: e.request_id == repeat["x-request-id"])  # fmt: skip
    assert event.cache is CacheOutcome.HIT and event.cost_usd == 0
    assert event.cost_saved_usd > 0 and event.prompt_tokens == 0 and event.upstream_attempts == 0
    assert event.cache_key == headers["x-watchllm-cache-key"]  # the entry that answered


def test_cache_keys_are_keyed_yet_gateway_and_cache_service_agree(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    """Issue 22: an exact key was the plain SHA-256 of the request, and keys are shown (the
    request log, the dashboard, this header), so anyone could confirm what a tenant asked
    by hashing a guess. The key is now an HMAC with the gateways' secret: the plain hash of
    the very request is not it, nor stored anywhere; and the key the gateway looks up is
    the one the cache service stored under: the same request again is a hit."""
    key = new_key(database_url)
    question = f"my symptoms are {uuid.uuid4()}"
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    auth = {"Authorization": f"Bearer {key}"}
    url = f"{stack.gateway.url}/v1/chat/completions"
    first = httpx.post(url, json=body, headers=auth, timeout=30)
    assert first.status_code == 200 and first.headers["x-watchllm-cache"] == "miss"
    cache_key = first.headers["x-watchllm-cache-key"]
    project = project_of_exact_key(cache_key)
    assert project is not None
    plain = hashlib.sha256(canonical_request("/v1/chat/completions", body, {})).hexdigest()
    assert plain not in cache_key  # what an attacker recomputes from a guess
    assert cache_key == exact_cache_key(project, "/v1/chat/completions", body, {},
                                        secret=CACHE_KEY_SECRET)  # fmt: skip
    until_stored(redis_url, dict(first.headers))
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(cache_key)  # the cache service stored under the gateway's key
        assert not [k for k in client.scan_iter(match=f"*{plain}*", count=1000)]
    finally:
        client.close()
    again = httpx.post(url, json=body, headers=auth, timeout=30)
    assert again.headers["x-watchllm-cache"] == "hit"
    assert again.headers["x-watchllm-cache-key"] == cache_key
    assert again.json()["choices"] == first.json()["choices"]


def test_a_rephrased_question_is_a_semantic_hit_in_the_same_project_only(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key, other_project = new_key(database_url), new_key(database_url)
    with sdk(stack, key) as client, sdk(stack, other_project) as other:
        answer, headers = ask(client, "How do I reset my password?")
        until_stored(redis_url, headers)
        again, hit = ask(client, "how do I reset my password")
        assert hit["x-watchllm-cache"] == "hit" and again == answer
        assert 0 < float(hit["x-watchllm-cache-similarity"]) <= 1
        # The event names the stored entry that answered, not this request's own key.
        assert hit["x-watchllm-cache-key"] != headers["x-watchllm-cache-key"]
        (event,) = wait_for_events(redis_url, stack.stream,
                                   lambda e: e.request_id == hit["x-request-id"])  # fmt: skip
        assert event.cache_key == headers["x-watchllm-cache-key"]
        _, isolated = ask(other, "How do I reset my password?")
        assert isolated["x-watchllm-cache"] == "miss"


def test_near_misses_and_other_scopes_are_misses(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key = new_key(database_url)
    with sdk(stack, key) as client:
        _, headers = ask(client, "Convert 100 dollars to euros")
        until_stored(redis_url, headers)
        assert ask(client, "Convert 200 dollars to euros")[1]["x-watchllm-cache"] == "miss"
        assert ask(client, "Convert 100 euros to dollars")[1]["x-watchllm-cache"] == "miss"
        for scope_change in (
            {"model": "gpt-4o"},
            {"messages": [{"role": "system", "content": "Answer in French."},
                          {"role": "user", "content": "Convert 100 dollars to euros"}]},
            {"messages": [{"role": "user", "content": "I live in Spain."},
                          {"role": "assistant", "content": "Noted."},
                          {"role": "user", "content": "Convert 100 dollars to euros"}]},
            {"tools": [{"type": "function", "function": {"name": "fx", "parameters": {}}}]},
        ):  # fmt: skip
            body = {"model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Convert 100 dollars to euros"}],
                    **scope_change}  # fmt: skip
            response = httpx.post(
                f"{stack.gateway.url}/v1/chat/completions", json=body,
                headers={"authorization": f"Bearer {key}"}, timeout=10,
            )  # fmt: skip
            assert response.headers["x-watchllm-cache"] == "miss", scope_change


def test_cached_answers_replay_as_streams_through_both_sdks(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key = new_key(database_url)
    with sdk(stack, key) as client:
        answer, headers = ask(client, "Describe the colour blue in a sentence.")
        until_stored(redis_url, headers)
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": "Describe the colour blue in a sentence."}],
        ) as raw:  # fmt: skip
            assert raw.headers["x-watchllm-cache"] == "hit"
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == answer
    with anthropic.Anthropic(base_url=stack.gateway.url, api_key=key, max_retries=0) as claude:
        hello = [{"role": "user", "content": "Hi Claude!"}]
        raw_first = claude.messages.with_raw_response.create(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=hello,  # type: ignore[arg-type]
        )
        first = raw_first.parse()
        until_stored(redis_url, dict(raw_first.headers))
        with claude.messages.stream(model="claude-haiku-4-5", max_tokens=64,
                                    messages=hello) as s:  # type: ignore[arg-type]  # fmt: skip
            replayed = "".join(s.text_stream)
            assert s.response.headers["x-watchllm-cache"] == "hit"
    assert replayed == first.content[0].text


def test_opt_outs_and_ttl(stack: Stack, database_url: str, redis_url: str) -> None:
    key = new_key(database_url)
    with sdk(stack, key) as client:
        _, headers = ask(client, "Tell me a fact about owls.",
                         extra_headers={"x-watchllm-no-store": "true"})  # fmt: skip
        time.sleep(0.5)
        _, default = ask(client, "Tell me a fact about owls.")
        assert default["x-watchllm-cache"] == "miss"
        assert default["x-watchllm-cache-key"] == headers["x-watchllm-cache-key"]
        until_stored(redis_url, default)  # the second, default request was stored
        _, bypass = ask(client, "Tell me a fact about owls.",
                        extra_headers={"cache-control": "no-cache"})  # fmt: skip
        assert bypass["x-watchllm-cache"] == "bypass"
        assert ask(client, "Tell me a fact about owls.")[1]["x-watchllm-cache"] == "hit"
        _, short = ask(client, "Tell me a fact about foxes.",
                       extra_headers={"x-watchllm-cache-ttl": "1"})  # fmt: skip
        until_stored(redis_url, short)
        time.sleep(1.5)
        assert ask(client, "Tell me a fact about foxes.")[1]["x-watchllm-cache"] == "miss"


def test_a_spent_budget_refuses_only_what_the_cache_cannot_answer(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    """A cache hit costs nothing and is never refused by a budget (issue 16)."""
    key = new_key(database_url)
    with sdk(stack, key) as client:
        first, headers = ask(client, "Which planet is known as the red planet?")
        until_stored(redis_url, headers)
        (miss,) = wait_for_events(redis_url, stack.stream,
                                  lambda e: e.request_id == headers["x-request-id"])  # fmt: skip
        assert miss.project_id is not None
        limits = redis.Redis.from_url(redis_url)
        try:
            limits.hset(limits_key(miss.project_id), "bd", 0)  # as the limiter syncs it
            again, repeat = ask(client, "Which planet is known as the red planet?")
            with pytest.raises(openai.RateLimitError) as refused:
                ask(client, "How many legs does a spider have?")
        finally:
            limits.delete(limits_key(miss.project_id))
            limits.close()
    assert again == first and repeat["x-watchllm-cache"] == "hit"
    assert repeat["x-watchllm-budget-limit-usd"] == repeat["x-watchllm-budget-remaining-usd"] == "0"
    assert refused.value.code == "budget_exceeded"
    request_id = refused.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, stack.stream, lambda e: e.request_id == request_id)
    assert event.http_status == 429 and event.cache is CacheOutcome.MISS
    assert event.error_type == "budget_exceeded"


def test_gateway_keeps_answering_when_the_cache_service_dies(
    stack: Stack, database_url: str
) -> None:
    key = new_key(database_url)
    stack.cache.kill()
    durations = []
    with sdk(stack, key) as client:
        for i in range(10):
            started = time.monotonic()
            _, headers = ask(client, f"Question number {i}?")
            durations.append(time.monotonic() - started)
            assert headers["x-watchllm-cache"] == "miss"
    # The first asks wait for the deadline (2 s here); then the gateway stops asking
    # a cache service that does not answer, and requests no longer wait: well under the
    # deadline, however slow this machine answers a request.
    assert sum(d < 1.0 for d in durations) >= 6, durations


def test_a_request_the_limiter_refuses_did_not_use_the_cache(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    key = new_key(database_url)
    with sdk(stack, key) as client:
        _, headers = ask(client, "What is the boiling point of water?")
        (first,) = wait_for_events(redis_url, stack.stream,
                                   lambda e: e.request_id == headers["x-request-id"])  # fmt: skip
        assert first.project_id is not None
        limits = redis.Redis.from_url(redis_url)
        try:
            limits.hset(limits_key(first.project_id), "rpm", 1)  # as the limiter syncs it
            ask(client, "What is the freezing point of water?")  # the minute's one request
            with pytest.raises(openai.RateLimitError) as refused:
                ask(client, "What is the melting point of iron?")
        finally:
            limits.delete(limits_key(first.project_id))
            limits.close()
    request_id = refused.value.response.headers["x-request-id"]
    (event,) = wait_for_events(redis_url, stack.stream, lambda e: e.request_id == request_id)
    # Neither a hit nor a miss: the Cache page's hit rate counts only requests that asked.
    assert event.http_status == 429 and event.cache is CacheOutcome.BYPASS
