"""What one key can make Redis hold, and whether limits hold when Redis is full (issue 22,
finding 2), on a gateway process in front of a Valkey of each test's own (so ``INFO
memory`` counts nothing but this test).

The attack: ten requests with a 3.9 MB model name, all refused with 429, grew Redis by
37 MiB (every event kept the caller's whole model string, and a refused request's
question was still sent to the semantic cache); and with Redis at ``maxmemory`` a key
limited to 5 requests a minute got 12 answers (the limiter's writes were refused, and
the gateway failed open).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import unique
from tests.e2e.conftest import gateway_env
from tests.support.processes import ServiceProcess, start_gateway
from watchllm_limiter.library import library_source
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.cli.embedded import EmbeddedRedis
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.cache import SEMANTIC_ASK_STREAM
from watchllm_shared.contracts.limits import limits_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

KiB, MiB = 1024, 1024 * 1024
HUGE = 3_900_000  # characters, as in the issue


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[redis.Redis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def url_of(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://:{kwargs['password']}@{kwargs['host']}:{kwargs['port']}/0"


def load_library(client: redis.Redis, allow_oom: bool = True) -> None:
    """The limiter's library as the limiter service loads it; without ``allow_oom``, as
    an older limiter (library version 5) left it."""
    source = library_source()
    if not allow_oom:
        writers = source.count("redis.register_function") - source.count("'no-writes'")
        source, flags = re.subn(r",\s*flags = \{'allow-oom'\}", "", source)
        assert flags == writers, "library.lua changed: flag its functions again here"
    client.function_load(source, replace=True)


@dataclass
class Gateway:
    process: ServiceProcess
    stream: str  # its events stream

    @property
    def url(self) -> str:
        return self.process.url


def gateway_on(
    valkey: redis.Redis, fake_provider: ServiceProcess, database_url: str, log_dir: Path,
    **extra: str,
) -> Gateway:  # fmt: skip
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(
        fake_provider.url, url_of(valkey), database_url, stream,
        WATCHLLM_MAX_BODY_BYTES=str(4 * MiB), WATCHLLM_CACHE_ENABLED="true", **extra,
    )  # fmt: skip
    return Gateway(start_gateway(env, log_dir), stream)


async def key_limited_to(
    account_store: AccountStore, valkey: redis.Redis, per_minute: int | None = None,
    per_day: int | None = None,
) -> tuple[str, str]:  # fmt: skip
    """A PRO project (semantic cache on, the default) and a key limited to
    ``per_minute`` requests (or its project to ``per_day``), written where the limiter
    service writes limits."""
    name = unique("proj")
    project = await account_store.create_project(name, Plan.PRO)
    created = await account_store.create_key(name, "tests")
    if per_minute is not None:
        valkey.hset(limits_key(project.id), f"k:{created.key.id}:rpm", per_minute)
    if per_day is not None:
        valkey.hset(limits_key(project.id), "day", per_day)
    return name, created.secret


def chat(url: str, key: str, model: str = "gpt-4o-mini", question: str = "Hello",
         headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    body = {"model": model, "messages": [{"role": "user", "content": question}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {key}", **(headers or {})})  # fmt: skip


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def events(client: redis.Redis, gateway: Gateway) -> list[RequestCompleted]:
    return [RequestCompleted.from_stream_fields(f) for _, f in client.xrange(gateway.stream)]


async def wait_for_events(client: redis.Redis, gateway: Gateway, count: int) -> None:
    """Until the gateway has written ``count`` events (it writes after answering)."""
    for _ in range(600):  # bounds a failure only
        if client.xlen(gateway.stream) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} events expected, {client.xlen(gateway.stream)} written")


async def test_refused_requests_with_huge_fields_leave_little_in_redis(
    valkey: redis.Redis, fake_provider: ServiceProcess, database_url: str, log_dir: Path,
    account_store: AccountStore,
) -> None:  # fmt: skip
    """Bound: ten requests refused, whatever their fields, grow Redis by ≤ 100 KiB."""
    load_library(valkey)
    gateway = gateway_on(valkey, fake_provider, database_url, log_dir)
    try:
        # A day's quota of one (a minute's could run out on a slow machine).
        _, key = await key_limited_to(account_store, valkey, per_day=1)
        # Warm: the gateway's connections and the stream exist before the baseline.
        replies = [await asyncio.to_thread(chat, gateway.url, key) for _ in range(4)]
        assert [r.status_code for r in replies] == [200, 429, 429, 429]
        await wait_for_events(valkey, gateway, 4)
        before = used_memory(valkey)
        huge_model = "gpt-4o-mini-" + "x" * HUGE
        attack = [
            *[(huge_model, "Hello", {}) for _ in range(4)],
            *[("gpt-4o-mini", "y" * HUGE, {}) for _ in range(4)],
            *[("gpt-4o-mini", "Hello", {"openai-beta": "z" * (30 * KiB)}) for _ in range(2)],
        ]
        statuses = [
            (await asyncio.to_thread(chat, gateway.url, key, *request)).status_code
            for request in attack
        ]
        await wait_for_events(valkey, gateway, 14)
        grown = used_memory(valkey) - before
    finally:
        gateway.process.stop()
    assert grown <= 100 * KiB, f"Redis grew by {grown / KiB:.0f} KiB"
    assert statuses == [400] * 4 + [429] * 6  # a model name that long is refused outright
    recorded = events(valkey, gateway)[4:]
    assert all(e.model is not None and len(e.model) <= 256 for e in recorded)
    assert valkey.xlen(SEMANTIC_ASK_STREAM) == 1, "only the one admitted request asked"


def fill(client: redis.Redis) -> None:
    """Redis past ``maxmemory`` with ``noeviction`` (as compose and k8s run it): junk
    until it refuses to write, then the limit put below what it holds, so that no write
    of a few bytes brings it back under (the first request's did)."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", used_memory(client) + 4 * MiB)
    for i in range(10_000):
        try:
            client.set(f"junk:{i}", b"j" * (64 * KiB))
        except redis.exceptions.OutOfMemoryError:
            client.config_set("maxmemory", used_memory(client) - MiB)
            return
    raise AssertionError("Redis never refused a write")


async def test_a_full_redis_keeps_counting_a_key_limited_to_five_a_minute(
    valkey: redis.Redis, fake_provider: ServiceProcess, database_url: str, log_dir: Path,
    account_store: AccountStore,
) -> None:  # fmt: skip
    """The limiter's functions run at ``maxmemory`` (flagged ``allow-oom``): 5 answers
    and 7 refusals, as with room to spare. Before: 12 answers (failing open)."""
    load_library(valkey)
    gateway = gateway_on(valkey, fake_provider, database_url, log_dir)
    try:
        _, key = await key_limited_to(account_store, valkey, per_minute=5)
        fill(valkey)
        statuses = [(await asyncio.to_thread(chat, gateway.url, key)).status_code
                    for _ in range(12)]  # fmt: skip
    finally:
        gateway.process.stop()
    assert statuses == [200] * 5 + [429] * 7


@pytest.mark.parametrize(("policy", "answered"), [("closed", 0), ("open", 12)])
async def test_when_redis_refuses_the_limiters_writes_the_policy_decides(
    valkey: redis.Redis, fake_provider: ServiceProcess, database_url: str, log_dir: Path,
    account_store: AccountStore, policy: str, answered: int,
) -> None:  # fmt: skip
    """A library loaded by an older limiter (no ``allow-oom``): at ``maxmemory`` every
    check is refused. Closed (the default) answers 503; open is the issue's 12 answers,
    there only for an operator who chooses availability over quotas."""
    load_library(valkey, allow_oom=False)
    extra = {"WATCHLLM_LIMITER_WRITE_REFUSED_POLICY": policy} if policy == "open" else {}
    gateway = gateway_on(valkey, fake_provider, database_url, log_dir, **extra)
    try:
        _, key = await key_limited_to(account_store, valkey, per_minute=5)
        fill(valkey)
        replies = [await asyncio.to_thread(chat, gateway.url, key) for _ in range(12)]
    finally:
        gateway.process.stop()
    statuses = [r.status_code for r in replies]
    assert statuses.count(200) == answered, statuses
    if policy == "closed":
        assert set(statuses) == {503}
        assert replies[0].json()["error"]["code"] == "rate_limiter_unavailable"
