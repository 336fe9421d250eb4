"""Rate limits hold while the gateway itself is overloaded and Redis is healthy.

A gateway process in front of the fake provider, the cache client on (its lookups share
the limiter's Redis connections, as in the full stack), the limiter library in the
session's Redis. First the gateway's capacity is measured here, then it is held at
twice what it serves in a second (that many requests in flight at once, each connection
sending its next request as soon as it has an answer) against a per-minute limit it
cannot all pass. Before the fix this admitted 1,686 requests by fail-open in one such
run; the limit must hold exactly and fail-open must never happen while Redis answers.

Everything asserted is a count read from the gateway (its answers, its /metrics, its
log), never a duration, so a slower machine only means fewer requests.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from tests.bench.loadgen import Run, Target, run_closed_loop
from tests.e2e.conftest import gateway_env
from tests.limiter.test_limits_across_replicas import chat, new_key
from tests.support.processes import ServiceProcess, start_gateway
from watchllm_shared.accounts import AccountStore
from watchllm_shared.contracts.cache import CACHE_STORE_STREAM
from watchllm_shared.contracts.limits import limits_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CAPACITY_SECONDS = 1.5
OVERLOAD_SECONDS = 3.0


def _metrics(gateway: ServiceProcess) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in httpx.get(str(gateway.metrics_url), timeout=30).text.splitlines():
        if line.startswith("watchllm_limiter_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _target(gateway: ServiceProcess, key: str) -> Target:
    port = int(gateway.url.rsplit(":", 1)[1])
    body = orjson.dumps(chat("how many get through?"))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return Target("127.0.0.1", port, "/v1/chat/completions", body, headers=headers)


def _statuses(run: Run) -> Counter[str]:
    return Counter(r.error or str(r.status) for r in run.records)


async def _forget_stores(redis: aioredis.Redis, projects: list[uuid.UUID]) -> None:
    """Delete the stores this gateway published for its misses. No cache service runs
    here, and the store stream's name is fixed: thousands of them left on it were the
    next cache service's work on this Redis, minutes of embeddings before the first
    store of its own (other tests' "answer never stored")."""
    needles = [f'"project_id":"{p}"'.encode() for p in projects]
    after = "-"
    while page := await redis.xrange(CACHE_STORE_STREAM, min=after, count=1000):
        ours = [i for i, fields in page if any(n in fields.get(b"data", b"") for n in needles)]
        if ours:
            await redis.xdel(CACHE_STORE_STREAM, *ours)
        after = "(" + page[-1][0].decode()


@pytest.mark.timeout(300)
async def test_an_overloaded_gateway_admits_exactly_the_limit_and_never_fails_open(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    account_store: AccountStore,
    limiter_library: None,
    log_dir: Path,
) -> None:
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_UPSTREAM_READ_TIMEOUT_SECONDS="60",
        # The rate limit alone decides here: 1,000-2,000 requests are in flight at once,
        # past the default concurrency caps and a project's share of the pool
        # (tests/e2e/test_tenant_concurrency.py covers those).
        WATCHLLM_UPSTREAM_PROJECT_SHARE="1", WATCHLLM_PROJECT_CONCURRENCY="100000",
        WATCHLLM_UPSTREAM_MAX_CONNECTIONS="100000",
    )  # fmt: skip
    gateway = start_gateway(env, log_dir)
    redis = aioredis.Redis.from_url(redis_url)
    projects: list[uuid.UUID] = []
    try:
        _, unlimited, warm_project, _ = await new_key(account_store)
        projects.append(warm_project)
        warm = await run_closed_loop(_target(gateway, unlimited), 32, CAPACITY_SECONDS)
        capacity = sum(r.status == 200 for r in warm.records) / CAPACITY_SECONDS
        in_flight = min(max(int(2 * capacity), 200), 3000)  # two seconds' worth at once
        # Half the first burst: every connection sends at least once, so at least twice
        # the limit is asked for however slow the machine gets meanwhile.
        limit = in_flight // 2

        _, key, project_id, _ = await new_key(account_store)
        projects.append(project_id)
        # The limiter service's part (it copies limits from Postgres into this hash),
        # played by the test so the two cores go to the gateway.
        await redis.hset(limits_key(project_id), mapping={"rpm": limit})
        before = _metrics(gateway)
        run = await run_closed_loop(
            _target(gateway, key), in_flight, OVERLOAD_SECONDS, drain_timeout=120
        )
        after = _metrics(gateway)
    finally:
        gateway.stop()  # its last stores are written before it exits
        await _forget_stores(redis, projects)
        await redis.delete(stream)
        await redis.aclose()

    statuses = _statuses(run)
    seen = f"{statuses} with {in_flight} in flight, capacity {capacity:.0f}/s, limit {limit}"

    def counted(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    fail_open = counted('watchllm_limiter_unavailable_total{policy="open"}')
    allowed = counted('watchllm_limiter_decisions_total{decision="allowed"}')
    refused = counted('watchllm_limiter_decisions_total{decision="refused"}')
    assert len(run.records) >= 2 * limit, f"not enough load to test the limit: {seen}"
    assert fail_open == 0, f"failed open {fail_open:.0f} times while Redis answered: {seen}"
    assert statuses["200"] <= limit, f"{statuses['200']} admitted over a limit of {limit}: {seen}"
    assert allowed == limit, f"Redis admitted {allowed:.0f}, not the limit: {seen}"
    assert refused == statuses["429"], f"{refused:.0f} refusals: {seen}"
    assert "rate limiter unavailable" not in gateway.log()
