"""The Health page shows what a gateway sees, not only heartbeats (issue 20, item 7).

A real gateway process whose cache service does not answer (none runs: semantic asks
time out, the breaker opens) and whose Redis user may not call functions (every limiter
ask fails: fail-open) publishes its state report. The dashboard's Health page, run by
Streamlit's AppTest against the same Redis while the cache and limiter heartbeats say
"up" (as they did in the issue: running, not answering), says both are degraded and why.
The report is asserted first, from Redis, so a failure says which half is wrong.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
import redis.asyncio as aioredis
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import unique
from tests.dashboard.conftest import PASSWORD, app, shown
from tests.e2e.conftest import gateway_env
from tests.support.processes import SERVICE_SECRETS, ServiceProcess, start_gateway
from watchllm_dashboard.main import shared_runtime
from watchllm_shared.accounts import AccountStore, Plan, Role, SessionStore, UserStore
from watchllm_shared.contracts.cache import SEMANTIC_ASK_STREAM
from watchllm_shared.contracts.gateway_state import GatewayState, read_gateway_states
from watchllm_shared.contracts.health import (
    HEARTBEAT_TTL_SECONDS,
    heartbeat_key,
    publish_heartbeat,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 3  # the third timeout in a row opens the breaker (cache_client._BREAKER_AFTER)


def _as_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture(scope="module")
def no_functions_url(redis_url: str) -> Iterator[str]:
    """A Redis user that may do everything but call functions: the limiter's ask fails
    for this gateway only (the session's other tests keep their limiter)."""
    user, password = unique("no-fcall"), uuid.uuid4().hex
    client = redis.Redis.from_url(redis_url)
    try:
        client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                           channels=["*"], commands=["+@all", "-fcall", "-fcall_ro"])  # fmt: skip
        yield _as_user(redis_url, user, password)
    finally:
        client.acl_deluser(user)
        client.close()


@pytest.fixture(scope="module")
def gateway(
    fake_provider: ServiceProcess, no_functions_url: str, database_url: str, log_dir: object
) -> Iterator[tuple[ServiceProcess, str]]:
    instance = unique("gateway-health")
    client = redis.Redis.from_url(no_functions_url)
    try:  # no cache service may answer this gateway's asks: none runs, none left waiting
        # A cache service an earlier test stopped leaves its heartbeat until it expires.
        until = time.monotonic() + 2 * HEARTBEAT_TTL_SECONDS
        while client.exists(heartbeat_key("cache")) and time.monotonic() < until:
            time.sleep(0.2)
        assert not client.exists(heartbeat_key("cache")), "a cache service is running"
        client.delete(SEMANTIC_ASK_STREAM)
    finally:
        client.close()
    env = gateway_env(
        fake_provider.url, no_functions_url, database_url, f"test.health.{uuid.uuid4().hex}",
        WATCHLLM_CACHE_ENABLED="true", WATCHLLM_CACHE_TIMEOUT_SECONDS="0.2",
        WATCHLLM_INSTANCE_NAME=instance, WATCHLLM_STATE_REPORT_SECONDS="0.1",
    )  # fmt: skip
    process = start_gateway(env, log_dir)  # type: ignore[arg-type]
    yield process, instance
    process.stop()


async def _state(redis_url: str, instance: str) -> GatewayState | None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        states = {s.instance: s for s in await read_gateway_states(client)}
    finally:
        await client.aclose()
    return states.get(instance)


@pytest.fixture(scope="module")
async def reported(
    gateway: tuple[ServiceProcess, str], account_store: AccountStore, redis_url: str
) -> GatewayState:
    """``REQUESTS`` requests through the gateway (each answered, the cache and the limiter
    skipped), then its first report taken after the last answer."""
    process, instance = gateway
    project = await account_store.create_project(unique("health"), Plan.PRO)
    key = (await account_store.create_key(project.name, "main")).secret
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(REQUESTS):
            reply = await http.post(
                f"{process.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": f"question {n}"}]},
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert "x-ratelimit-limit-requests" not in reply.headers  # let through unchecked
    answered = datetime.now(UTC)
    for _ in range(300):  # a report every 0.1 s; 30 s bounds only a failure
        state = await _state(redis_url, instance)
        if state is not None and state.at > answered:  # taken after the last answer
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"no report after the requests: {state}")


def test_the_report_says_what_the_gateway_saw(reported: GatewayState) -> None:
    assert reported.totals.semantic_timeouts == REQUESTS
    assert reported.recent.semantic_timeouts == REQUESTS  # the window holds the start
    assert reported.semantic_breaker == "open"
    assert reported.totals.limiter_failed_open == REQUESTS
    assert reported.recent.limiter_failed_open == REQUESTS
    assert reported.limiter_failing
    assert reported.events_write_error is None and reported.totals.events_dropped == 0


@pytest.fixture(scope="module")
async def health_page(
    gateway: tuple[ServiceProcess, str],
    reported: GatewayState,
    redis_url: str,
    database_url: str,
    account_store: AccountStore,
) -> AsyncIterator[AppTest]:
    """The Health page as an admin sees it, with the app's runtime on the session's Redis."""
    users = UserStore(account_store.pool, actor="tests")
    admin = unique("admin")
    await users.create_user(admin, PASSWORD, Role.ADMIN)
    token = (await SessionStore(account_store.pool).sign_in(admin, PASSWORD)).token
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "WATCHLLM_GATEWAY_URL": gateway[0].url,
        "WATCHLLM_ANALYTICS_URL": "http://127.0.0.1:9",  # not running: the page says so
        "WATCHLLM_DASHBOARD_CACHE_SECONDS": "0", **SERVICE_SECRETS,
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        await asyncio.to_thread(shared_runtime)
    client = aioredis.Redis.from_url(redis_url)
    try:  # heartbeats fresh for the page's 15 s: "up", as in the issue
        await publish_heartbeat(client, "cache", "test", stores={"qdrant": "connected"})
        await publish_heartbeat(client, "limiter", "test")
        yield await asyncio.to_thread(app(token, "Health").run)
    finally:
        await client.delete(heartbeat_key("cache"), heartbeat_key("limiter"))
        await client.aclose()
        st.cache_resource.clear()


def _row(at: AppTest, part: str) -> tuple[str, str]:
    """The part's state and why, on the page's first table (the services)."""
    table = at.dataframe[0].value.set_index("part")
    return table.at[part, "state"], table.get("why", {}).get(part, "")


def test_health_page_says_the_cache_is_degraded_and_why(
    health_page: AppTest, gateway: tuple[ServiceProcess, str]
) -> None:
    instance = gateway[1]
    assert not health_page.exception, [e.value for e in health_page.exception]
    state, why = _row(health_page, "cache")
    assert state == "degraded"
    assert f"{instance} timed out {REQUESTS} semantic lookups in the last 1 min" in why
    assert "breaker open" in why
    text = shown(health_page)
    assert "Gateway: degraded" in text and f"**cache: degraded** — {instance} timed out" in text


def test_health_page_says_the_limiter_failed_open(
    health_page: AppTest, gateway: tuple[ServiceProcess, str]
) -> None:
    instance = gateway[1]
    state, why = _row(health_page, "limiter")
    assert state == "degraded"
    assert f"{instance} let {REQUESTS} requests through unchecked (fail-open)" in why
    assert "the limiter is not answering now" in why
    seen = health_page.dataframe[1].value
    mine = seen[seen["gateway"] == instance].iloc[0]
    assert mine["limiter fail-open (5 min)"] == REQUESTS and mine["cache breaker"] == "open"
