"""One tenant cannot take the semantic cache away from the others (issue 22, finding 9).

The attack: six ~4 MB questions (each cost the cache service ~3.4 s of embedding) or a
burst of asks from one project made another tenant's paraphrase a miss for seconds.
Real gateway, real cache service (real model, qdrant-edge), real Redis.

- A question over ``MAX_SEMANTIC_QUESTION_CHARS`` skips the semantic layer in the
  gateway (header and metric say why; the exact layer still answers) and never reaches
  the cache service; a cache service handed one anyway (an older gateway, or anything
  that can write the stream) refuses it unembedded.
- The cache service serves asks round-robin across projects with a bounded queue per
  project, so a burst of one project's asks leaves another's paraphrase a hit.

The gateway's deadline is generous (5 s) where a test is not about it; where it is
(the burst), the burst holds far more work than that deadline (a thousand asks of
4,000 characters, ≥ 20 ms each on two threads), so without fairness the paraphrase is
a miss by a wide margin, not by a race.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.cache_e2e.test_cache_through_gateway import Stack, ask, new_key, sdk, until_stored
from tests.e2e.conftest import gateway_env
from tests.support.cache_streams import store_done, store_id
from tests.support.processes import ServiceProcess, start_cache_service, start_gateway
from watchllm_shared.contracts.cache import (
    CACHE_STORE_STREAM,
    MAX_SEMANTIC_QUESTION_CHARS,
    SEMANTIC_ASK_STREAM,
    CachedAnswer,
    CacheStore,
    SemanticAnswer,
    SemanticAsk,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUGE = 3_900_000  # characters: a ~4 MB question, under the gateway's body limit
BURST = 1_000
QUESTION = "How do I reset my password?"
PARAPHRASE = "how do I reset my password"


@pytest.fixture(scope="module")
def stack(
    fake_provider: ServiceProcess, redis_url: str, database_url: str, log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory, limiter_library: None,
) -> Iterator[Stack]:  # fmt: skip
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_CACHE_TIMEOUT_SECONDS="5",
        WATCHLLM_MAX_BODY_BYTES=str(4 * 1024 * 1024),  # the default, for the huge questions
        # The fake provider reads a 4 MB body before it answers: on a loaded machine that
        # took past the suite's 1.5 s upstream read timeout (a 504, not what is tested).
        WATCHLLM_UPSTREAM_READ_TIMEOUT_SECONDS="30",
    )  # fmt: skip
    cache = start_cache_service(
        {**env, "WATCHLLM_QDRANT_EDGE_PATH": str(tmp_path_factory.mktemp("cache") / "qdrant")},
        log_dir,
    )
    gateway = start_gateway(env, log_dir)
    yield Stack(gateway, cache, stream, fake_provider)
    gateway.stop()
    cache.stop()


def metric(url: str | None, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` with these labels (0 when there is none)."""
    text = httpx.get(str(url), timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def asks_seen(stack: Stack) -> float:
    """Every ask the cache service read, whatever became of it."""
    return metric(stack.cache.metrics_url, "watchllm_cache_asks_total")


def stored(client: redis.Redis, request_id: str) -> CacheStore:
    deadline = time.monotonic() + 60
    while (entry_id := store_id(client, request_id)) is None or not store_done(client, entry_id):
        assert time.monotonic() < deadline, "store never done"
        time.sleep(0.05)
    ((_, fields),) = client.xrange(CACHE_STORE_STREAM, entry_id, entry_id)
    return CacheStore.model_validate_json(fields[b"data"])


def test_huge_questions_skip_the_semantic_layer_and_leave_others_a_hit(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    attacker, victim = new_key(database_url), new_key(database_url)
    client = redis.Redis.from_url(redis_url)
    with sdk(stack, attacker) as big, sdk(stack, victim) as small:
        answer, headers = ask(small, QUESTION)
        until_stored(redis_url, headers)
        seen = asks_seen(stack)
        huge = [f"Question {n}: " + "why " * (HUGE // 4) for n in range(6)]
        for question in huge:
            _, headers = ask(big, question)
            assert headers["x-watchllm-cache"] == "miss"  # answered upstream
            assert headers["x-watchllm-cache-semantic-skipped"] == "question-too-long"
        # Never embedded: no ask reached the cache service, and the store it was sent
        # (the exact layer still caches the answer) carries no question.
        assert asks_seen(stack) == seen
        assert stored(client, headers["x-request-id"]).question is None
        again, hit = ask(small, PARAPHRASE)
        assert hit["x-watchllm-cache"] == "hit" and again == answer
        assert "x-watchllm-cache-semantic-skipped" not in hit
        _, repeat = ask(big, huge[-1])  # the exact layer still serves the huge question
        assert repeat["x-watchllm-cache"] == "hit"
    client.close()
    skipped = metric(stack.gateway.metrics_url, "watchllm_cache_semantic_skipped_total",
                     reason="question-too-long")  # fmt: skip
    assert skipped == 7


def test_the_cache_service_refuses_an_over_long_question_unembedded(
    stack: Stack, redis_url: str
) -> None:
    """What a gateway without the cap (or anything that can write the streams) sends."""
    client = redis.Redis.from_url(redis_url)
    project, channel, request_id = uuid.uuid4(), f"test:replies:{uuid.uuid4().hex}", "huge-ask"
    question = "why " * (HUGE // 4)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    ask_ = SemanticAsk(request_id=request_id, reply_to=channel, project_id=project, scope="s",
                       question=question,
                       deadline_unix_ms=int((time.time() + 60) * 1000))  # fmt: skip
    client.xadd(SEMANTIC_ASK_STREAM, {"data": ask_.model_dump_json()})
    reply = None
    deadline = time.monotonic() + 60
    while reply is None and time.monotonic() < deadline:
        reply = pubsub.get_message(timeout=1.0)
    assert reply is not None, "no reply"
    answer = SemanticAnswer.model_validate_json(reply["data"])
    assert answer.hit is False and answer.reason == "question too long"
    assert metric(stack.cache.metrics_url, "watchllm_cache_asks_total", outcome="too_long") == 1

    store = CacheStore(request_id="huge-store", project_id=project, exact_key=f"test:{project}",
                       scope="s", question=question, ttl_seconds=60,
                       answer=CachedAnswer(endpoint="/v1/chat/completions", model="m", body="{}",
                                           prompt_tokens=1, completion_tokens=1,
                                           cost_usd="0"))  # fmt: skip
    entry_id = client.xadd(CACHE_STORE_STREAM, {"data": store.model_dump_json()})
    while not store_done(client, entry_id):
        assert time.monotonic() < deadline, "store never done"
        time.sleep(0.05)
    assert client.get(f"test:{project}") is not None  # the exact entry is written
    layers = "watchllm_cache_stores_total"
    assert metric(stack.cache.metrics_url, layers, layer="question_too_long") == 1
    pubsub.close()
    client.close()
    assert len(question) > MAX_SEMANTIC_QUESTION_CHARS


def test_a_burst_of_one_projects_asks_leaves_another_projects_paraphrase_a_hit(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    victim = new_key(database_url)
    client = redis.Redis.from_url(redis_url)
    with sdk(stack, victim) as small:
        answer, headers = ask(small, "What is the capital city of France?")
        until_stored(redis_url, headers)
        # One project's burst, as many gateway replicas would send it: questions at the
        # cap (the costliest the gateway lets through), deadlines far off, all queued
        # ahead of the victim's ask.
        attacker, channel = uuid.uuid4(), f"test:replies:{uuid.uuid4().hex}"
        deadline_ms = int((time.time() + 120) * 1000)
        pipe = client.pipeline(transaction=False)
        for n in range(BURST):
            question = (f"{n} " + "Tell me about the history of Rome. " * 200)[
                :MAX_SEMANTIC_QUESTION_CHARS
            ]
            burst_ask = SemanticAsk(request_id=f"burst-{n}", reply_to=channel,
                                    project_id=attacker, scope="burst", question=question,
                                    deadline_unix_ms=deadline_ms)  # fmt: skip
            pipe.xadd(SEMANTIC_ASK_STREAM, {"data": burst_ask.model_dump_json()})
        pipe.execute()
        again, hit = ask(small, "what is the capital city of France")
        assert hit["x-watchllm-cache"] == "hit" and again == answer
    # The attacker's project kept at most its share waiting (32): most of the burst was
    # answered a miss at once, unembedded.
    shed = metric(stack.cache.metrics_url, "watchllm_cache_asks_total", outcome="shed")
    assert shed > BURST / 2
    client.close()
