"""Redis going away under the limiter: the failure policy applies (counted, never a
500), and when Redis comes back empty the limiter reloads its library and limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import gateway_env
from tests.limiter.test_limits_across_replicas import chat, new_key
from tests.support.processes import ServiceProcess, free_port, start_gateway, start_limiter
from watchllm_shared.accounts import AccountStore, LimitStore
from watchllm_shared.cli.embedded import EmbeddedRedis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ")[1])
    return 0.0


async def test_policy_applies_while_redis_is_down_and_everything_recovers_by_itself(
    tmp_path: Path,
    fake_provider: ServiceProcess,
    database_url: str,
    account_store: AccountStore,
    log_dir: Path,
) -> None:
    port = free_port()
    first = EmbeddedRedis(tmp_path / "redis-a", port=port)
    redis_url = first.start()
    stream = f"test.requests.{uuid.uuid4().hex}"
    env = gateway_env(fake_provider.url, redis_url, database_url, stream,
                      WATCHLLM_LIMITER_HEARTBEAT_SECONDS="0.2")  # fmt: skip
    limiter = start_limiter(env, log_dir)
    fail_open = start_gateway(env, log_dir)
    fail_closed = start_gateway({**env, "WATCHLLM_LIMITER_FAILURE_POLICY": "closed"}, log_dir)
    second: EmbeddedRedis | None = None
    try:
        _, key, _, key_id = await new_key(account_store)
        await LimitStore(account_store.pool).set_key_limits(key_id, rpm=1000)
        headers = {"authorization": f"Bearer {key}"}

        def ask(gateway: ServiceProcess) -> httpx.Response:
            return httpx.post(f"{gateway.url}/v1/chat/completions", json=chat("hi"),
                              headers=headers, timeout=30)  # fmt: skip

        async def until_limited(gateway: ServiceProcess, what: str) -> None:
            """Until the gateway answers with the key's limit (60 s only bounds a failure:
            the limiter syncs on a notification, and on its 0.2 s heartbeat after an
            empty Redis)."""
            deadline = time.monotonic() + 60
            while True:
                answer = ask(gateway)
                if answer.headers.get("x-ratelimit-limit-requests") == "1000":
                    return
                assert time.monotonic() < deadline, f"{what}: {answer.status_code}"
                await asyncio.sleep(0.1)

        await until_limited(fail_closed, "limits never synced")
        first.stop()
        opened = ask(fail_open)
        assert opened.status_code == 200 and "x-ratelimit-limit-requests" not in opened.headers
        closed = ask(fail_closed)
        assert closed.status_code == 503
        assert closed.json()["error"]["code"] == "rate_limiter_unavailable"
        name = "watchllm_limiter_unavailable_total"
        assert _metric(str(fail_open.metrics_url), name + '{policy="open"}') >= 1
        assert _metric(str(fail_closed.metrics_url), name + '{policy="closed"}') >= 1
        # Redis returns empty (another data folder): no library, no limits, until the
        # limiter notices and reloads both, with no help.
        second = EmbeddedRedis(tmp_path / "redis-b", port=port, password=first.password)
        second.start()
        await until_limited(fail_closed, "no recovery")
        assert ask(fail_open).headers["x-ratelimit-limit-requests"] == "1000"
        assert "rate limiter answering again" in fail_closed.log()
        assert fail_closed.log().count("rate limiter unavailable") == 1  # once per episode
    finally:
        for process in (fail_open, fail_closed, limiter):
            process.stop()
        first.stop()
        if second is not None:
            second.stop()
