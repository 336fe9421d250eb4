"""One tenant cannot take every upstream connection (issue 22, finding 7), on real
gateway processes in front of fake providers, with real Redis and Postgres.

The attack: 60 slow-reading streams from one tenant held a 50-connection upstream pool,
and another tenant's requests waited for a connection until they timed out (504). Here
the pool has 12 connections and a project may hold a quarter of them (3) on a replica;
tenant A opens 20 streams from a provider that trickles them out (a ~1,000 s stream
each) and reads none of them past its first bytes.

Every assertion is on state (answers, the in-flight sets in Redis), never on how long
something took: waits poll for a state and their bounds only bound a failure.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import redis

from tests.conftest import unique
from tests.e2e.conftest import FAKE_PROVIDER_KEY, gateway_env
from tests.support.processes import ServiceProcess, start_fake_provider, start_gateway
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.contracts.limits import inflight_key, limits_key

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

POOL, SHARE = 12, 3  # upstream connections per replica; a project's quarter of them
SLOW = "gpt-4o"  # routed to the slow provider, whose streams trickle out


@pytest.fixture(scope="module")
def slow_provider(log_dir: Path) -> Iterator[ServiceProcess]:
    """Streams of 20,000 words, one event every 50 ms: they outlast every test here."""
    fake = start_fake_provider(log_dir, "--chunk-delay", "0.05", "--reply-words", "20000")
    yield fake
    fake.stop()


def routed_env(
    fast: str, slow: str, redis_url: str, database_url: str, **extra: str
) -> dict[str, str]:
    routes = [
        {"pattern": SLOW, "provider": "openai", "base_url": f"{slow}/v1",
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY"},
        {"pattern": "claude-*", "provider": "anthropic", "base_url": fast,
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY"},
        {"pattern": "gpt-*", "provider": "openai", "base_url": f"{fast}/v1",
         "api_key_env": "WATCHLLM_TEST_FAKE_KEY"},
    ]  # fmt: skip
    stream = f"test.requests.{uuid.uuid4().hex}"
    return gateway_env(
        fast, redis_url, database_url, stream, WATCHLLM_ROUTES=json.dumps(routes),
        WATCHLLM_UPSTREAM_MAX_CONNECTIONS=str(POOL), WATCHLLM_TEST_FAKE_KEY=FAKE_PROVIDER_KEY,
        **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def gateways(
    fake_provider: ServiceProcess, slow_provider: ServiceProcess, redis_url: str,
    database_url: str, log_dir: Path, limiter_library: None,
) -> Iterator[list[ServiceProcess]]:  # fmt: skip
    """Two replicas sharing Redis, leases of 6 s (renewed every 2 s: a replica would
    have to stall for 4 s before a running request's slot lapsed)."""
    env = routed_env(fake_provider.url, slow_provider.url, redis_url, database_url,
                     WATCHLLM_CONCURRENCY_LEASE_SECONDS="6")  # fmt: skip
    started = [start_gateway(env, log_dir) for _ in range(2)]
    yield started
    for gateway in started:
        gateway.stop()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


class Tenant:
    def __init__(self, name: str, project_id: uuid.UUID, key_id: uuid.UUID, key: str) -> None:
        self.name, self.project_id, self.key_id, self.key = name, project_id, key_id, key

    def in_flight(self, store: redis.Redis) -> int:
        """Slots held now: members of the project's in-flight set whose lease runs."""
        return int(store.zcount(inflight_key(self.project_id), f"({redis_ms(store)}", "+inf"))


def redis_ms(store: redis.Redis) -> int:
    """Redis's clock, which the leases run on."""
    seconds, micros = store.time()
    return seconds * 1000 + micros // 1000


async def new_tenant(account_store: AccountStore) -> Tenant:
    name = unique("tenant")
    project = await account_store.create_project(name, Plan.PRO)
    created = await account_store.create_key(name, "tests")
    return Tenant(name, project.id, created.key.id, created.secret)


def chat_body(model: str = "gpt-4o-mini", stream: bool = False, text: str = "hi") -> dict:  # type: ignore[type-arg]
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}


class HeldStreams:
    """Streams opened and left unread after their first bytes (a slow reader)."""

    def __init__(self) -> None:
        self.stack = AsyncExitStack()
        self.refusals: list[httpx.Response] = []
        self.readers: list[AsyncIterator[bytes]] = []
        self.held = 0

    async def open(self, url: str, tenant: Tenant, count: int) -> None:
        client = await self.stack.enter_async_context(
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None))
        )

        async def one() -> None:
            request = client.build_request(
                "POST", f"{url}/v1/chat/completions", json=chat_body(SLOW, stream=True),
                headers={"authorization": f"Bearer {tenant.key}"},
            )  # fmt: skip
            response = await client.send(request, stream=True)
            if response.status_code != 200:
                await response.aread()
                self.refusals.append(response)
                return
            self.stack.push_async_callback(response.aclose)
            # Read its first bytes, then no further. The iterator is kept: a collected
            # one would close the response (a hang-up, not a slow reader).
            chunks = response.aiter_raw()
            self.readers.append(chunks)
            await anext(chunks)
            self.held += 1

        await asyncio.gather(*(one() for _ in range(count)))

    async def close(self) -> None:
        """Hang up on every stream (the callers disconnect mid-stream)."""
        await self.stack.aclose()


@pytest.fixture
async def held() -> AsyncIterator[HeldStreams]:
    streams = HeldStreams()
    yield streams
    await streams.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # bounds a failure only
    while not condition():
        assert time.monotonic() < deadline, f"not within 60 s: {what}"
        await asyncio.sleep(0.05)


def openai_client(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


async def test_slow_streams_of_one_tenant_leave_the_pool_to_the_others(
    gateways: list[ServiceProcess], account_store: AccountStore, store: redis.Redis,
    held: HeldStreams,
) -> None:  # fmt: skip
    gateway = gateways[0].url
    a, b = await new_tenant(account_store), await new_tenant(account_store)
    await held.open(gateway, a, 20)
    assert held.held == SHARE, [(r.status_code, r.text) for r in held.refusals[:3]]
    assert len(held.refusals) == 20 - SHARE
    refusal = held.refusals[0]
    assert refusal.status_code == 429 and refusal.headers["retry-after"] == "1"
    assert refusal.headers["x-ratelimit-limit-concurrency"] == str(SHARE)
    assert refusal.headers["x-ratelimit-remaining-concurrency"] == "0"
    error = refusal.json()["error"]
    assert error["code"] == "concurrency_limit_exceeded" and "in flight" in error["message"]
    assert a.in_flight(store) == SHARE
    async with httpx.AsyncClient() as scraper:
        metrics = (await scraper.get(gateways[0].metrics_url or "")).text
    assert 'watchllm_concurrency_refused_total{scope="replica"} 17.0' in metrics
    assert "watchllm_requests_in_flight 3.0" in metrics
    async with (
        openai_client(gateway, a.key) as as_a,
        openai_client(gateway, b.key) as as_b,
        anthropic.AsyncAnthropic(base_url=gateway, api_key=a.key, max_retries=0) as a_messages,
    ):
        # The other tenant is served, as many at once as its own share, through the SDK.
        create = as_b.chat.completions.with_raw_response.create
        answers = await asyncio.gather(*(
            create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"q{i}"}])
            for i in range(SHARE)
        ))  # fmt: skip
        assert [r.http_response.status_code for r in answers] == [200] * SHARE
        assert answers[0].headers["x-ratelimit-limit-concurrency"] == str(SHARE)
        # Tenant A's next request is refused in the SDK's terms, on either API.
        with pytest.raises(openai.RateLimitError) as refused:
            await as_a.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "more"}]
            )
        assert refused.value.code == "concurrency_limit_exceeded"
        with pytest.raises(anthropic.RateLimitError) as refused_too:
            await a_messages.messages.create(
                model="claude-haiku-4-5", max_tokens=16,
                messages=[{"role": "user", "content": "more"}],
            )  # fmt: skip
        limit = refused_too.value.response.headers["x-ratelimit-limit-concurrency"]
        assert limit == str(SHARE) and "in flight" in refused_too.value.message
        assert a.in_flight(store) == SHARE  # refusals took nothing
        # The callers hang up mid-stream: every slot is released, and A is served again.
        await held.close()
        await until(lambda: a.in_flight(store) == 0, "A's slots released after the hang-ups")
        answer = await as_a.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}]
        )
        assert answer.choices[0].message.content


async def test_a_key_limit_holds_that_key_and_leaves_the_projects_other_keys(
    gateways: list[ServiceProcess], account_store: AccountStore, store: redis.Redis,
    held: HeldStreams,
) -> None:  # fmt: skip
    tenant = await new_tenant(account_store)
    store.hset(limits_key(tenant.project_id), f"k:{tenant.key_id}:conc", 1)
    await held.open(gateways[0].url, tenant, 3)
    assert held.held == 1 and len(held.refusals) == 2
    refusal = held.refusals[0]
    assert refusal.headers["x-ratelimit-limit-concurrency"] == "1"
    assert refusal.json()["error"]["code"] == "concurrency_limit_exceeded"
    other = (await account_store.create_key(tenant.name, "other")).secret
    await held.open(gateways[0].url, Tenant(tenant.name, tenant.project_id, uuid.uuid4(), other), 1)
    assert held.held == 2 and tenant.in_flight(store) == 2


@pytest.mark.parametrize(
    ("text", "stream", "status"),
    [
        ("done", False, 200),  # a unary answer
        ("done", True, 200),  # a stream that ends with [DONE]
        ("[[fake:stream_fail_after=2]]", True, 200),  # the upstream breaks mid-stream
        ("[[fake:delay=4]]", False, 504),  # the upstream times out (1.5 s here)
        ("[[fake:status=500]]", False, 502),  # the upstream fails after retries
    ],
    ids=["unary", "stream", "broken-stream", "upstream-timeout", "upstream-error"],
)
async def test_a_slot_is_released_however_the_request_ends(
    gateways: list[ServiceProcess], account_store: AccountStore, store: redis.Redis,
    text: str, stream: bool, status: int,
) -> None:  # fmt: skip
    tenant = await new_tenant(account_store)
    store.hset(limits_key(tenant.project_id), "conc", 1)  # as the limiter syncs it
    async with httpx.AsyncClient(timeout=60) as client:
        for _ in range(2):  # the second is admitted only if the first let go of its slot
            response = await client.post(
                f"{gateways[0].url}/v1/chat/completions", json=chat_body(stream=stream, text=text),
                headers={"authorization": f"Bearer {tenant.key}"},
            )  # fmt: skip
            assert response.status_code == status, response.text
            await until(lambda: tenant.in_flight(store) == 0, "the slot released")


async def test_the_limit_is_global_across_replicas_and_a_killed_replicas_slots_lapse(
    gateways: list[ServiceProcess], account_store: AccountStore, store: redis.Redis,
    held: HeldStreams,
) -> None:  # fmt: skip
    """A project limited to 5: the first replica gives it its share (3), the second only
    the 2 left of the limit. SIGKILL the first: its 3 slots lapse within the lease,
    the second's (renewed all along) stay, and the project may start 3 more."""
    first, second = gateways
    tenant = await new_tenant(account_store)
    store.hset(limits_key(tenant.project_id), "conc", 5)
    await held.open(first.url, tenant, 4)
    assert held.held == 3
    assert "replica" in held.refusals[0].json()["error"]["message"]  # its pool share
    await held.open(second.url, tenant, 4)
    assert held.held == 5 and tenant.in_flight(store) == 5
    # Of the second replica's four, one was refused by its share, one by the limit.
    beyond = [r for r in held.refusals if r.headers["x-ratelimit-limit-concurrency"] == "5"]
    assert len(beyond) == 1 and "key or project" in beyond[0].json()["error"]["message"]
    first.kill()  # no release, no renewal: only the lease can free its slots
    await until(lambda: tenant.in_flight(store) == 2, "the killed replica's slots lapsed")
    # The live replica's slots outlast their first lease because it renews them: wait
    # until Redis's clock is past the lease of every slot taken so far.
    lease_ends = store.zrange(inflight_key(tenant.project_id), 0, -1, withscores=True)
    latest = max(score for _, score in lease_ends)
    await until(lambda: redis_ms(store) > latest + 1500, "past the leases taken so far")
    assert tenant.in_flight(store) == 2, "the live replica's slots were not renewed"
    await held.open(second.url, tenant, 1)
    assert held.held == 6 and tenant.in_flight(store) == 3
