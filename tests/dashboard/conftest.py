"""The dashboard against the whole running system: real Postgres and Redis (the
session's), and the fake provider, gateway, cache, limiter and analytics services as
processes for this folder only (package scope), all on one events stream of its own.
Streamlit's AppTest runs the real app script in this process with the environment a
deployment would give it.

Data is made the way production makes it: requests through the gateway (which the
analytics service stores and the cache service caches), plus synthetic events on the
same stream for what a few requests cannot show (errors, 429s, a day of history).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import streamlit as st
from streamlit.testing.v1 import AppTest

import watchllm_dashboard
from tests.analytics.conftest import make_event
from tests.conftest import unique
from tests.e2e.conftest import gateway_env
from tests.support.processes import ANALYTICS_AUTH, SERVICE_SECRETS, ServiceProcess, start_service
from watchllm_dashboard.main import shared_runtime
from watchllm_shared.accounts import AccountStore, Plan, Role, SessionStore, UserStore
from watchllm_shared.contracts import CacheOutcome, RequestCompleted, RequestStatus
from watchllm_shared.contracts.health import HEARTBEAT_SERVICES, heartbeat_key

APP = str(Path(watchllm_dashboard.__file__).with_name("app.py"))
PASSWORD = "correct horse battery staple"
ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")  # a backslash-escaped ASCII punctuation mark
START_S = 120  # generous: on a loaded 2-core machine a cold start can take a while


@dataclass
class Stack:
    gateway: ServiceProcess
    analytics: ServiceProcess
    cache: ServiceProcess
    limiter: ServiceProcess
    stream: str
    env: dict[str, str]


@pytest.fixture(scope="package")
def stack(
    fake_provider: ServiceProcess,
    redis_url: str,
    database_url: str,
    log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    limiter_library: None,
) -> Iterator[Stack]:
    stream = f"test.dashboard.{uuid.uuid4().hex[:10]}"
    env = gateway_env(
        fake_provider.url,
        redis_url,
        database_url,
        stream,
        WATCHLLM_CACHE_ENABLED="true",
        WATCHLLM_CACHE_TIMEOUT_SECONDS="2",
    )
    data = tmp_path_factory.mktemp("dashboard-services")
    analytics_env = {
        **env,
        "WATCHLLM_DATA_DIR": str(data),
        "WATCHLLM_ANALYTICS_CONSUMER_NAME": "dashboard-tests",
        "WATCHLLM_ANALYTICS_BATCH_MAX_SECONDS": "0.1",
    }
    cache_env = {**env, "WATCHLLM_QDRANT_EDGE_PATH": str(data / "qdrant")}
    limiter_env = {**env, "WATCHLLM_LIMITER_CONSUMER_GROUP": f"limiter-{stream}"}
    with ThreadPoolExecutor(4) as pool:  # in parallel: the cache loads a model meanwhile
        started = [
            pool.submit(start_service, "analytics", analytics_env, log_dir, "/readyz", START_S),
            pool.submit(start_service, "cache", cache_env, log_dir, "/readyz", START_S),
            pool.submit(start_service, "limiter", limiter_env, log_dir, "/readyz", START_S),
            pool.submit(start_service, "gateway", env, log_dir, "/livez", START_S),
        ]
    failed = [f.exception() for f in started if f.exception() is not None]
    if failed:
        for future in started:
            if future.exception() is None:
                future.result().stop()
        raise failed[0]  # type: ignore[misc]
    analytics, cache, limiter, gateway = (f.result() for f in started)
    yield Stack(gateway, analytics, cache, limiter, stream, env)
    for process in (gateway, limiter, cache, analytics):
        process.stop()
    client = redis.Redis.from_url(redis_url)  # later tests' gateways read the heartbeats
    try:
        client.delete(stream, *(heartbeat_key(s) for s in HEARTBEAT_SERVICES))
    finally:
        client.close()


@pytest.fixture(scope="package")
def dashboard_env(stack: Stack, redis_url: str, database_url: str) -> Iterator[dict[str, str]]:
    """The environment a deployment gives the app. The app reads it once per process, so
    it is set only while the app's runtime opens (later tests keep their environment);
    dashboard processes get it passed."""
    env = {
        "DATABASE_URL": database_url, "REDIS_URL": redis_url,
        "WATCHLLM_GATEWAY_URL": stack.gateway.url, "WATCHLLM_ANALYTICS_URL": stack.analytics.url,
        "WATCHLLM_DASHBOARD_CACHE_SECONDS": "0", **SERVICE_SECRETS,
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        shared_runtime()
    yield env
    st.cache_resource.clear()  # closes the app's runtime (pool, Redis) before the DB goes


@dataclass
class Accounts:
    admin: str
    viewer: str
    project: str
    project_id: uuid.UUID
    key_id: uuid.UUID
    key: str


@pytest.fixture(scope="package")
async def accounts(account_store: AccountStore) -> Accounts:
    users = UserStore(account_store.pool, actor="tests")
    admin, viewer = unique("admin"), unique("viewer")
    await asyncio.gather(
        users.create_user(admin, PASSWORD, Role.ADMIN),
        users.create_user(viewer, PASSWORD, Role.VIEWER),
    )
    project = await account_store.create_project(unique("dash"), Plan.PRO)
    created = await account_store.create_key(project.name, "main")
    return Accounts(admin, viewer, project.name, project.id, created.key.id, created.secret)


@pytest.fixture(scope="package")
async def tokens(account_store: AccountStore, accounts: Accounts) -> dict[str, str]:
    """A signed-in session per role (signing in through the form is tested on its own)."""
    sessions = SessionStore(account_store.pool)
    admin, viewer = await asyncio.gather(
        sessions.sign_in(accounts.admin, PASSWORD), sessions.sign_in(accounts.viewer, PASSWORD)
    )
    return {"admin": admin.token, "viewer": viewer.token}


def chat(gateway: ServiceProcess, key: str, text: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        timeout=30,
        headers={"authorization": f"Bearer {key}", **headers},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
    )


def query(stack: Stack, name: str, **params: Any) -> dict[str, Any]:
    reply = httpx.post(
        f"{stack.analytics.url}/v1/queries/{name}", json=params, headers=ANALYTICS_AUTH, timeout=30
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def entry_cached(stack: Stack, exact_key: str) -> bool:
    """Whether the cache service wrote the exact entry (``x-watchllm-cache-key``): the
    gateway's next ask for it is a hit, its GET finds it."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        return bool(client.exists(exact_key))
    finally:
        client.close()


def wait_for(check: Any, within: float = 120.0, what: str = "condition") -> None:
    """Until ``check()``; ``within`` only bounds a failure (generous: on a loaded 2-core
    machine a store waits for the cache service's embedding, a row for a batch)."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} not met within {within} s"
        time.sleep(0.1)


@dataclass
class Traffic:
    requests: int  # rows the project has
    exact_hits: int  # as the gateway reported them (x-watchllm-cache: hit)
    history: list[RequestCompleted] = field(default_factory=list)  # the synthetic events


@pytest.fixture(scope="package")
def traffic(stack: Stack, accounts: Accounts) -> Traffic:
    """Real requests through the gateway, then synthetic history; waits until stored."""
    outcomes: list[str] = []

    def ask(text: str) -> httpx.Response:
        reply = chat(stack.gateway, accounts.key, text)
        assert reply.status_code == 200, reply.text
        outcomes.append(reply.headers["x-watchllm-cache"])
        return reply

    first = ask("What is the capital of France?")
    ask("Name three primary colours.")
    # The same question again: an exact hit once the cache service stored the answer.
    entry = first.headers["x-watchllm-cache-key"]
    wait_for(lambda: entry_cached(stack, entry), what="the first answer cached")
    assert ask("What is the capital of France?").headers["x-watchllm-cache"] == "hit"
    history = _publish_history(stack, accounts)
    total = len(outcomes) + len(history)
    now = datetime.now(UTC)
    window = {
        "project_id": str(accounts.project_id),
        "start": (now - timedelta(days=2)).isoformat(),
        # The gateway stamps an event once its answer is sent: maybe after this now.
        "end": (now + timedelta(minutes=5)).isoformat(),
    }

    def stored() -> bool:
        rows = query(stack, "project_totals", **window)["rows"]
        return bool(rows) and rows[0][0] >= total

    wait_for(stored, what=f"{total} rows in ClickHouse")
    return Traffic(total, outcomes.count("hit"), history)


def _publish_history(stack: Stack, accounts: Accounts) -> list[RequestCompleted]:
    """A day of events on the gateway's stream: errors, 429s, semantic hits, two models,
    two values of a custom property and three end users."""
    now = datetime.now(UTC)
    events = []
    for hour in range(1, 24):
        at = now - timedelta(hours=hour, minutes=5)
        common = {"key_id": accounts.key_id, "model": ("gpt-4o-mini", "gpt-4o")[hour % 2],
                  "properties": {"feature": ("chat", "search")[hour % 2]},
                  "end_user": f"user-{hour % 3}"}  # fmt: skip
        events.append(make_event(accounts.project_id, at, **common, cache=CacheOutcome.MISS))
        events.append(make_event(accounts.project_id, at, **common, cache=CacheOutcome.BYPASS))
        if hour % 3 == 0:
            events.append(
                make_event(
                    accounts.project_id,
                    at,
                    **common,
                    status=RequestStatus.RATE_LIMITED,
                    http_status=429,
                    error_type="rate_limit_exceeded",
                    cache=CacheOutcome.BYPASS,
                )
            )
        if hour % 4 == 0:
            events.append(
                make_event(
                    accounts.project_id, at, **common, cache=CacheOutcome.HIT, cache_similarity=0.97
                )
            )
        if hour % 5 == 0:
            events.append(
                make_event(
                    accounts.project_id,
                    at,
                    **common,
                    status=RequestStatus.UPSTREAM_ERROR,
                    cache=CacheOutcome.MISS,
                    http_status=502,
                    error_type="upstream_5xx",
                )
            )
    publish(stack, events)
    return events


@dataclass
class Tenant:
    """A project of a test's own (so its numbers are only the test's), with one key."""

    project: str
    project_id: uuid.UUID
    key: str
    key_id: uuid.UUID


async def new_tenant(store: AccountStore, prefix: str = "own") -> Tenant:
    project = await store.create_project(unique(prefix), Plan.PRO)
    created = await store.create_key(project.name, "first")
    return Tenant(project.name, project.id, created.secret, created.key.id)


def publish(stack: Stack, events: list[RequestCompleted]) -> None:
    """Events on the gateway's stream, as the gateway writes them."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        for event in events:
            client.xadd(stack.stream, event.to_stream_fields())  # type: ignore[arg-type]
    finally:
        client.close()


def stored_count(stack: Stack, project_id: uuid.UUID) -> int:
    """Rows the analytics store holds for the project (any time this year)."""
    now = datetime.now(UTC)
    window = {"project_id": str(project_id), "start": (now - timedelta(days=300)).isoformat(),
              "end": (now + timedelta(days=30)).isoformat()}  # fmt: skip
    return int(query(stack, "project_request_log_count", **window)["rows"][0][0])


def wait_stored(stack: Stack, project_id: uuid.UUID, count: int) -> None:
    wait_for(lambda: stored_count(stack, project_id) >= count, what=f"{count} rows stored")


@pytest.fixture
def clock(
    dashboard_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[datetime], None]:
    """Pins the app's "now" (the end of every time window) to a moment of the test's."""
    runtime = shared_runtime()

    def pin(moment: datetime) -> None:
        monkeypatch.setattr(runtime, "clock", lambda: moment, raising=False)

    return pin


def app(token: str | None = None, page: str | None = None, project: str | None = None) -> AppTest:
    """The real app script, signed in with ``token`` (if any), on ``page`` and ``project``
    (if given; the sidebar's choices)."""
    at = AppTest.from_file(APP, default_timeout=30)
    for key, value in (("auth_token", token), ("page", page), ("project", project)):
        if value is not None:
            at.session_state[key] = value
    return at


def shown(at: AppTest) -> str:
    """Every text the page shows (markdown, captions, metrics, headers, alerts), with
    Markdown's backslash escapes read as the characters they show (tenant text is
    escaped, ``views.ui.plain``)."""
    parts: list[str] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "info",
        "success",
        "warning",
        "error",
        "code",
    ):
        parts += [str(element.value) for element in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    parts += [p.proto.text for p in at.get("progress")]
    return ESCAPED.sub(r"\1", "\n".join(parts))


def assert_clean(at: AppTest) -> None:
    """No exception, error or warning on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert not at.warning, [w.value for w in at.warning]
