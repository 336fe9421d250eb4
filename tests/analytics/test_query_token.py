"""Issue 22, finding 3, against the real analytics service (``python -m
watchllm_analytics``, embedded chdb, the session's Redis): with the default settings
its query API answered anyone — every project's usage, the request log's key ids,
models and costs, the cache keys that answered. Now a request without the token, or
with another, gets 401 and not a byte of data; the service refuses to start without a
token (or with a short one), naming the variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from tests.analytics.conftest import QUERY_TOKEN, make_event
from tests.support.processes import ServiceProcess, free_port, start_service
from watchllm_shared.contracts import CacheOutcome

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOW = datetime.now(UTC)
WINDOW = {"start": (NOW - timedelta(hours=1)).isoformat(),
          "end": (NOW + timedelta(hours=1)).isoformat()}  # fmt: skip
CACHE_KEY = f"watchllm:cache:exact:v3:{{{uuid.uuid4()}}}:{'ab' * 32}"


@pytest.fixture(scope="module")
def analytics(
    redis_url: str, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, uuid.UUID, str]]:
    """The service, with one tenant's requests stored: what an attacker is after."""
    stream = f"test.analytics.token.{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": redis_url, "WATCHLLM_EVENTS_STREAM": stream,
           "WATCHLLM_DATA_DIR": str(tmp_path_factory.mktemp("analytics-token")),
           "WATCHLLM_ANALYTICS_CONSUMER_NAME": "token-test",
           "WATCHLLM_ANALYTICS_BATCH_MAX_SECONDS": "0.1"}  # fmt: skip
    service = start_service("analytics", env, log_dir, timeout=90)
    project = uuid.uuid4()
    events = [make_event(project, NOW, cache=CacheOutcome.HIT, cache_key=CACHE_KEY)
              for _ in range(5)]  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        for event in events:
            client.xadd(stream, event.to_stream_fields())  # type: ignore[arg-type]
        yield service, project, events[0].request_id
    finally:
        service.stop()
        client.delete(stream, f"{stream}.dlq")
        client.close()


def _ask(service: ServiceProcess, name: str, body: dict[str, object],
         headers: dict[str, str]) -> httpx.Response:  # fmt: skip
    return httpx.post(f"{service.url}/v1/queries/{name}", json=body, headers=headers, timeout=10)


def test_without_the_token_the_query_api_answers_401_and_no_data(
    analytics: tuple[ServiceProcess, uuid.UUID, str],
) -> None:
    service, project, request_id = analytics
    token = {"Authorization": f"Bearer {QUERY_TOKEN}"}
    questions = {
        "usage_by_project": WINDOW,
        "project_request_log": {**WINDOW, "project_id": str(project)},
        "project_cache_entry_hits": {**WINDOW, "project_id": str(project)},
    }
    # What each answer gives away: the tenant, its requests, what it asked (cache keys).
    secrets = {"usage_by_project": str(project), "project_request_log": request_id,
               "project_cache_entry_hits": CACHE_KEY}  # fmt: skip
    # The data is there, and the token reads it (storing takes a moment).
    deadline = time.monotonic() + 60
    log = questions["project_request_log"]
    while len(rows := _ask(service, "project_request_log", log, token).json()["rows"]) < 5:
        assert time.monotonic() < deadline, f"stored {len(rows)} of 5"
        time.sleep(0.1)
    for name, body in questions.items():
        assert secrets[name] in _ask(service, name, body, token).text, name

    attempts = {
        "no header": {},
        "wrong token": {"Authorization": "Bearer " + "x" * len(QUERY_TOKEN)},
        "token without the scheme": {"Authorization": QUERY_TOKEN},
        "its prefix": {"Authorization": f"Bearer {QUERY_TOKEN[:16]}"},
        "the scheme alone": {"Authorization": "Bearer"},
    }
    for attempt, headers in attempts.items():
        for name, body in questions.items():
            answer = _ask(service, name, body, headers)
            assert answer.status_code == 401, (attempt, name)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert not any(secret in answer.text for secret in secrets.values())
            assert "rows" not in answer.json(), (attempt, name)
        listing = httpx.get(f"{service.url}/v1/queries", headers=headers, timeout=10)
        assert listing.status_code == 401, attempt
    # What stays open tells nothing about tenants.
    assert httpx.get(f"{service.url}/readyz", timeout=10).status_code == 200
    assert str(project) not in httpx.get(f"{service.url}/health", timeout=10).text


@pytest.mark.parametrize(("token", "state"), [("", "is not set"), ("short", "has 5 characters")])
def test_the_service_refuses_to_start_without_a_token(
    redis_url: str, tmp_path: Path, token: str, state: str
) -> None:
    """Before it binds a port or opens a store: exit 3, one line naming the variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHLLM_")}
    env |= {"REDIS_URL": redis_url, "WATCHLLM_DATA_DIR": str(tmp_path),
            "WATCHLLM_ANALYTICS_PORT": str(free_port()),
            "WATCHLLM_ANALYTICS_METRICS_PORT": str(free_port()),
            "WATCHLLM_ANALYTICS_QUERY_TOKEN": token}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "watchllm_analytics"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert f"WATCHLLM_ANALYTICS_QUERY_TOKEN {state}: it must be at least 32" in done.stderr
    assert "openssl rand -hex 32" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "clickhouse").exists()  # refused before opening its store
