"""What a key holder's own strings can do to a real gateway process (issue 22): model
names never become metric labels (finding 5), secrets in logged bodies are masked
(finding 10)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import unique
from tests.e2e.conftest import Gateway, gateway_env
from tests.support.processes import ServiceProcess, start_gateway
from watchllm_shared.accounts import AccountStore, Plan

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
    published to Redis all the same), no limiter (hundreds of requests from one key)."""
    stream = f"test.requests.{uuid.uuid4().hex}"
    routes = [{"pattern": "gpt-*", "provider": "openai", "base_url": f"{fake_provider.url}/v1",
               "api_key_env": "WATCHLLM_TEST_FAKE_KEY",
               "models": ["gpt-4o-mini", HOUSE_MODEL]}]  # fmt: skip
    env = gateway_env(
        fake_provider.url, redis_url, database_url, stream,
        WATCHLLM_ROUTES=json.dumps(routes), WATCHLLM_LOG_BODIES="true",
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_LIMITER_ENABLED="false",
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
