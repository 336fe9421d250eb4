"""A cookie the provider sets stays with that one answer: the gateway's upstream session
is shared by every caller, so it must neither send the cookie back on later requests
(anyone's) nor hand it to the caller.

The fake provider sets a cookie on every answer, as api.openai.com's edge does. The
route's base URL names ``localhost``: an HTTP client keeps cookies for host names, not
for bare IP addresses, and real providers are host names."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import unique
from tests.e2e.conftest import gateway_env
from tests.support.processes import ServiceProcess, start_gateway
from watchllm_shared.accounts import AccountStore, Plan

pytestmark = pytest.mark.e2e


async def test_provider_cookies_are_not_replayed_to_the_provider_or_passed_to_callers(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    account_store: AccountStore,
    log_dir: Path,
) -> None:
    by_name = fake_provider.url.replace("127.0.0.1", "localhost")
    env = gateway_env(by_name, redis_url, database_url, f"test.requests.{uuid.uuid4().hex}")
    gateway = start_gateway(env, log_dir)
    marker = uuid.uuid4().hex
    keys = []
    for _ in range(2):  # two tenants
        name = unique("cookie")
        await account_store.create_project(name, Plan.PRO)
        keys.append((await account_store.create_key(name, "tests")).secret)
    try:
        for key in keys + keys:
            with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as sdk:
                raw = sdk.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": marker}]
                )
            assert raw.http_response.status_code == 200
            assert "set-cookie" not in raw.headers
    finally:
        gateway.stop()
    async with httpx.AsyncClient() as http:
        forwarded = (await http.get(f"{fake_provider.url}/_fake/requests")).json()
    mine = [r for r in forwarded if marker in str(r.get("body"))]
    assert len(mine) == 4
    assert [r["headers"].get("cookie") for r in mine] == [None] * 4
