"""What a key holder's own strings can do to a real gateway process (issue 22): model
names never become metric labels (finding 5), secrets in logged bodies are masked
(finding 10), and a per-request cache TTL never outlives the project's (finding 11)."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import unique
from tests.e2e.conftest import Gateway, gateway_env
from tests.support.cache_streams import store_id
from tests.support.processes import ServiceProcess, start_gateway
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.contracts.cache import CACHE_STORE_STREAM, CacheStore

pytestmark = pytest.mark.e2e

# Routed to the fake provider, listed, and in no price table: an unpriced model the
# operator configured, which keeps its name in the metric.
HOUSE_MODEL = "gpt-house-tuned"
NO_CACHE = {"cache-control": "no-cache, no-store"}  # these requests leave no stores behind


@pytest.fixture(scope="module")
def gateway(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    log_dir: Path,
) -> Iterator[Gateway]:
    """Bodies logged, the cache on (no cache service: lookups are misses, stores are
    published to Redis all the same), no limiter (hundreds of requests from one key),
    every model allowed (as before the default allow-list: the metric's labels must stay
    bounded whatever names reach pricing)."""
    stream = f"test.requests.{uuid.uuid4().hex}"
    routes = [{"pattern": "gpt-*", "provider": "openai", "base_url": f"{fake_provider.url}/v1",
               "api_key_env": "WATCHLLM_TEST_FAKE_KEY",
               "models": ["gpt-4o-mini", HOUSE_MODEL]}]  # fmt: skip
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_ROUTES=json.dumps(routes), WATCHLLM_LOG_BODIES="true",
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_LIMITER_ENABLED="false",
        WATCHLLM_DEFAULT_ALLOWED_MODELS='["*"]',
    )  # fmt: skip
    process = start_gateway(env, log_dir)
    yield Gateway(process, stream, process.url)
    process.stop()


async def new_key(account_store: AccountStore, **cache: object) -> str:
    """A fresh project (its cache settings given before its key's first use) and key."""
    name = unique("strings")
    await account_store.create_project(name, Plan.PRO)
    if cache:
        await account_store.set_cache_settings(name, **cache)  # type: ignore[arg-type]
    return (await account_store.create_key(name, "tests")).secret


async def chat(
    client: httpx.AsyncClient, key: str, model: str, text: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", **headers},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
    )


def unpriced_series(metrics: str) -> dict[str, float]:
    return {
        match[1]: float(match[2])
        for match in re.finditer(
            r'^watchllm_unpriced_requests_total\{model="(.*)"\} (\S+)$', metrics, re.MULTILINE
        )
    }


async def test_caller_model_names_do_not_grow_metrics(
    gateway: Gateway, account_store: AccountStore
) -> None:
    key = await new_key(account_store)
    metrics_url = str(gateway.process.metrics_url)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        # Every series a successful request creates exists before the baseline.
        assert (await chat(client, key, "gpt-4o-mini", "warm up", NO_CACHE)).status_code == 200
        before = (await client.get(metrics_url)).text
        names = [f"gpt-zz-{secrets.token_hex(100)}" for _ in range(300)]
        names.append("gpt-" + "x" * 252)  # the longest name the gateway accepts: 256
        for name in names:
            assert (await chat(client, key, name, "hi", NO_CACHE)).status_code == 200, name
        too_long = await chat(client, key, "gpt-" + "y" * 100_000, "hi", NO_CACHE)
        assert too_long.status_code == 400  # refused before it is forwarded or priced
        assert (await chat(client, key, HOUSE_MODEL, "hi", NO_CACHE)).status_code == 200
        # Priced before the answer was sent: the counts are final once the answers are back.
        after = (await client.get(metrics_url)).text
    assert unpriced_series(after) == {"other": len(names), HOUSE_MODEL: 1}
    assert "gpt-zz-" not in after and "xxxxxxxx" not in after and "yyyyyyyy" not in after
    # Two series (each a _total and a _created line) for 302 requests and 302 names.
    assert len(after) - len(before) < 1024, len(after) - len(before)


async def test_secrets_in_logged_bodies_are_masked(
    gateway: Gateway, account_store: AccountStore
) -> None:
    key = await new_key(account_store)
    leaked_key = await new_key(account_store)  # a real, full WatchLLM key, pasted in a prompt
    provider_key = "sk-proj-" + secrets.token_urlsafe(48)
    marker = f"marker-{uuid.uuid4().hex}"
    prompt = f"{marker} please use {leaked_key} and {provider_key} for me"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        answer = await chat(client, key, "gpt-4o-mini", prompt, NO_CACHE)
    assert answer.status_code == 200
    body_lines = [line for line in gateway.process.log().splitlines() if marker in line]
    assert body_lines, "the request body was not logged"  # bodies are logged: not vacuous
    logged = "\n".join(body_lines)
    assert f"{leaked_key[:10]}…[redacted]" in logged and "sk-pr…[redacted]" in logged
    log = gateway.process.log()
    for secret in (key, leaked_key, leaked_key[10:], provider_key, provider_key[10:]):
        assert secret not in log


def stored_ttl(redis_url: str, request_id: str) -> int:
    """The TTL of the store the gateway published for ``request_id`` (the cache service
    writes the entry with exactly this TTL, ``watchllm_cache.service.stores``)."""
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30  # published after the last byte; bounds a failure
    try:
        while (entry_id := store_id(client, request_id)) is None:
            assert time.monotonic() < deadline, f"no store published for {request_id}"
            time.sleep(0.02)
        ((_, fields),) = client.xrange(CACHE_STORE_STREAM, entry_id, entry_id)
    finally:
        client.close()
    return CacheStore.model_validate_json(fields[b"data"]).ttl_seconds


@pytest.mark.parametrize(
    ("header", "expected"),
    [(str(30 * 86_400), 60), ("61", 60), ("5", 5), (None, 60)],
    ids=["30-days-capped", "just-over-capped", "shorter-kept", "no-header"],
)
async def test_cache_ttl_header_never_outlives_the_project(
    gateway: Gateway, account_store: AccountStore, redis_url: str,
    header: str | None, expected: int,
) -> None:  # fmt: skip
    key = await new_key(account_store, mode="exact", ttl_seconds=60)
    headers = {"x-watchllm-cache-ttl": header} if header is not None else {}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        answer = await chat(client, key, "gpt-4o-mini", f"ttl {uuid.uuid4().hex}", headers)
    assert answer.status_code == 200 and answer.headers["x-watchllm-cache"] == "miss"
    assert stored_ttl(redis_url, answer.headers["x-request-id"]) == expected
