"""`watchllm up --replicas gateway=2,limiter=2,cache=2` on the test Postgres and a Redis
of its own (embedded by `up`): every replica answers, siblings share their consumer
groups (each entry handled by one of them, work spread over both), and limits stay
exact across the two gateways.

The Redis is the stack's own because the cache streams' names are fixed: on a shared
Redis, any other cache service (another test run's) joins the same groups and takes
some of the asks and stores this test counts.

tests/limiter/test_limits_across_replicas.py covers limits through gateways started
one by one beside a single limiter; here everything is started by `up` itself, with
two limiters charging and two cache services storing and answering.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import redis

from tests.limiter.test_limits_across_replicas import chat, new_key, until_charged, until_synced
from tests.support.processes import up_ports
from watchllm_shared.accounts import AccountStore, LimitStore
from watchllm_shared.contracts.cache import (
    CACHE_COMMAND_STREAM,
    CACHE_STORE_GROUP,
    CACHE_STORE_STREAM,
    SEMANTIC_ASK_GROUP,
    SEMANTIC_ASK_STREAM,
)

# Starting ten processes takes ~20 s on an idle 2-core machine, several times that
# under load: a wider budget than the suite's 120 s.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

WATCHLLM = str(Path(sys.executable).with_name("watchllm"))
HOST = socket.gethostname()
STORES = 'watchllm_cache_stores_total{layer="exact"}'
ASKS = "watchllm_cache_asks_total"  # every outcome
# Eight unrelated questions: none may be a semantic hit for another.
QUESTIONS = [
    "What is the capital of France?", "How do I bake sourdough bread at home?",
    "Explain TCP congestion control briefly.", "Which planet has the most moons?",
    "Write a haiku about autumn leaves.", "How does a heat pump work in winter?",
    "Who painted the Mona Lisa?", "What are good exercises for lower back pain?",
]  # fmt: skip


@dataclass
class Up:
    urls: dict[str, list[str]]  # service -> replica URLs, first replica first
    metrics: dict[str, list[str]]  # service -> replica metrics URLs, the same order
    stream: str
    log: Path
    redis: str  # the stack's own Redis, embedded by `up`


def _replica_urls(text: str, service: str) -> tuple[list[str], list[str]]:
    """(API URLs, metrics URLs) of the two replicas, as `up` printed them."""
    match = re.search(rf"^{service}:\s+2 replicas at (\S+), (\S+) \(metrics at (\S+), (\S+)\)$",
                      text, re.MULTILINE)  # fmt: skip
    assert match is not None, text
    return [match.group(1), match.group(2)], [match.group(3), match.group(4)]


@pytest.fixture(scope="module")
def up(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up-replicas")
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WATCHLLM_REDIS_URL")},
        "DATABASE_URL": database_url,
        "WATCHLLM_DATA_DIR": str(tmp / "data"),
        "WATCHLLM_EVENTS_STREAM": stream,
        # Deadline of one semantic ask: far above a healthy ask, so that however slow the
        # machine every ask is answered in time and none is skipped (three timeouts in a
        # row pause a gateway's asks: cache_client.py).
        "WATCHLLM_CACHE_TIMEOUT_SECONDS": "10",
        **up_ports(),
    }  # fmt: skip
    log = tmp / "up.log"
    command = [WATCHLLM, "up", "--fake-provider", "--replicas", "gateway=2,limiter=2",
               "--scale", "cache=2"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 240
        while "Press Ctrl-C" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        printed = {s: _replica_urls(text, s) for s in ("gateway", "limiter", "cache")}
        assert re.search(r"^redis:\s+embedded at ", text, re.MULTILINE), text
        # The printed URL hides the password; the runtime file (0600) carries it.
        redis_url = json.loads((tmp / "data" / "runtime.json").read_text())["redis_url"]
    except BaseException:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        raise
    yield Up({s: p[0] for s, p in printed.items()}, {s: p[1] for s, p in printed.items()},
             stream, log, redis_url)  # fmt: skip
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, log.read_text()


def metric(url: str, name: str) -> float:
    """The sum of every sample of ``name`` at ``url`` (a metrics listener)."""
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ ":
            total += float(line.rsplit(" ", 1)[1])
    return total


def per_replica(up: Up, service: str, name: str) -> list[float]:
    return [metric(url, name) for url in up.metrics[service]]


def cached(redis_url: str, keys: list[str]) -> bool:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.exists(*keys) == len(keys)
    finally:
        client.close()


def consumers(redis_url: str, stream: str, group: str) -> set[str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return {c["name"] for c in client.xinfo_consumers(stream, group)}
    finally:
        client.close()


async def test_every_replica_answers_and_siblings_share_their_groups(
    up: Up, account_store: AccountStore
) -> None:
    _, key, project_id, key_id = await new_key(account_store)
    await LimitStore(account_store.pool).set_key_limits(key_id, tpm=1_000_000)
    await until_synced(up.redis, project_id, f"k:{key_id}:tpm", 1_000_000)
    # Every ask a replica read, whatever its outcome (an ask read past its deadline is
    # counted as "expired"): the 8 asks of the misses, each handled by one replica.
    asks_before = per_replica(up, "cache", ASKS)
    stores_before = per_replica(up, "cache", STORES)
    events_before = per_replica(up, "limiter", "watchllm_limiter_events_total")

    tokens, contents, entries = 0, dict[str, str](), list[str]()
    for round_ in ("miss", "hit"):
        if round_ == "hit":  # a state, not a race with the cache services' stores
            deadline = time.monotonic() + 120
            while not cached(up.redis, entries):
                assert time.monotonic() < deadline, "the 8 answers never stored"
                await asyncio.sleep(0.1)
        for i, question in enumerate(QUESTIONS):
            gateway = up.urls["gateway"][i % 2]
            sdk = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
            async with sdk:
                raw = await sdk.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
                )
            answer = raw.parse()
            content = answer.choices[0].message.content or ""
            assert content.startswith("Echo: " + question[:20])
            assert contents.setdefault(question, content) == content  # a hit: the same answer
            assert raw.headers["x-watchllm-cache"] == round_, (round_, gateway)
            if round_ == "miss":
                assert answer.usage is not None
                tokens += answer.usage.total_tokens
                entries.append(raw.headers["x-watchllm-cache-key"])
            await asyncio.sleep(0.05)  # let both consumers of each group block again

    # Limiter: the 16 events (8 misses charged, 8 hits with nothing to charge) each
    # handled once, by one of the two replicas.
    await until_charged(up.redis, project_id, key_id, tokens)
    deadline = time.monotonic() + 60  # only bounds a failure: 16 is checked exactly below
    while True:
        events = per_replica(up, "limiter", "watchllm_limiter_events_total")
        handled = [a - b for a, b in zip(events, events_before, strict=True)]
        if sum(handled) >= 16 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert sum(handled) == 16 and min(handled) > 0, handled
    # Cache: every miss asked once and stored once, the work spread over both replicas.
    asked = [a - b for a, b in zip(per_replica(up, "cache", ASKS), asks_before, strict=True)]
    stored = [a - b for a, b in zip(per_replica(up, "cache", STORES), stores_before, strict=True)]
    assert sum(asked) == 8 and min(asked) > 0, asked
    assert sum(stored) == 8 and min(stored) > 0, stored  # the second round hit all 8

    names = {f"{HOST}-{service}-{i}" for service in ("limiter", "cache") for i in (1, 2)}
    assert consumers(up.redis, up.stream, "limiter") == {f"{HOST}-limiter-1", f"{HOST}-limiter-2"}
    assert len(consumers(up.redis, up.stream, "analytics")) == 1
    for stream, group in [
        (SEMANTIC_ASK_STREAM, SEMANTIC_ASK_GROUP),
        (CACHE_STORE_STREAM, CACHE_STORE_GROUP),
        (CACHE_COMMAND_STREAM, "cache"),
    ]:
        found = consumers(up.redis, stream, group) & names
        assert found == {f"{HOST}-cache-1", f"{HOST}-cache-2"}, (stream, found)


async def test_an_rpm_limit_is_exact_across_the_two_gateways(
    up: Up, account_store: AccountStore
) -> None:
    _, key, project_id, key_id = await new_key(account_store)
    await LimitStore(account_store.pool).set_key_limits(key_id, rpm=25)
    await until_synced(up.redis, project_id, f"k:{key_id}:rpm", 25)
    headers = {"authorization": f"Bearer {key}", "cache-control": "no-cache, no-store"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as http:
        responses = await asyncio.gather(*(
            http.post(f"{up.urls['gateway'][i % 2]}/v1/chat/completions",
                      json=chat(f"rpm burst {i}"), headers=headers)
            for i in range(100)
        ))  # fmt: skip
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 25 and statuses.count(429) == 75
    # 25 in all, not 25 each: one count across both. Which gateway admitted them is a
    # race (one took them all once); that both were asked and refused is not.
    refused_by = {str(r.url).rsplit("/v1", 1)[0] for r in responses if r.status_code == 429}
    assert refused_by == set(up.urls["gateway"])
