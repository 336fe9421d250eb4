"""One tenant cannot take the semantic cache away from the others (issue 22, finding 9).

The attack: six ~4 MB questions (each cost the cache service ~3.4 s of embedding) or a
burst of asks from one project made another tenant's paraphrase a miss for seconds.
Real gateway, real cache service (real model, qdrant-edge), real Redis.

- A question over ``MAX_SEMANTIC_QUESTION_CHARS`` skips the semantic layer in the
  gateway (header and metric say why; the exact layer still answers) and never reaches
  the cache service.

The gateway's deadline is generous (5 s): these tests are not about it.
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
    CacheStore,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUGE = 3_900_000  # characters: a ~4 MB question, under the gateway's body limit
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
