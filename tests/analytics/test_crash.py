"""The crash test: the analytics service as a real process, killed with SIGKILL several
times mid-batch while tens of thousands of events are published; in the end every event
id is stored exactly once and the sums (and the rollup's sums) match what was published.

Restarts alternate between the same consumer name (its pending entries are taken back
at start) and a new one (the dead consumer's entries are reclaimed once idle).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from tests.analytics.conftest import make_event
from tests.support.processes import SERVICE_SECRETS, ServiceProcess, free_port, start_process
from watchllm_shared.contracts import RequestCompleted

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVENTS = 30_000
KILLS = 4
DATABASE = "watchllm"


def start_analytics(env: dict[str, str], consumer: str, log_dir: Path) -> ServiceProcess:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    full_env = {**env, **SERVICE_SECRETS, "WATCHLLM_ANALYTICS_PORT": str(port),
                "WATCHLLM_ANALYTICS_METRICS_PORT": str(free_port()),
                "WATCHLLM_ANALYTICS_CONSUMER_NAME": consumer}  # fmt: skip
    log = log_dir / f"analytics-{port}.log"
    return start_process("watchllm_analytics", [], full_env, f"{base}/readyz", base, log, 60)


def publish_paced(
    client: redis.Redis, stream: str, published: list[RequestCompleted], hurry: threading.Event
) -> None:
    """About 500 events/s in pipelined chunks for as long as ``hurry`` is not set, so
    every kill lands while events flow however slowly the restarts go; then the rest up
    to ``EVENTS`` at once. What it published goes to ``published``."""
    projects = [uuid.uuid4() for _ in range(7)]
    while not hurry.is_set() or len(published) < EVENTS:
        chunk = [make_event(projects[(len(published) + i) % 7]) for i in range(100)]
        pipe = client.pipeline(transaction=False)
        for event in chunk:
            pipe.xadd(stream, event.to_stream_fields())  # type: ignore[arg-type]
        pipe.execute()
        published.extend(chunk)
        if not hurry.is_set():
            time.sleep(0.2)


def group_state(client: redis.Redis, stream: str) -> tuple[int, int]:
    """(pending, not yet delivered) of the analytics group."""
    info = next(g for g in client.xinfo_groups(stream) if g["name"] == b"analytics")
    return int(info["pending"]), int(info["lag"] or 0)


def wait_for_unstored(client: redis.Redis, stream: str) -> int:
    """Entries read by the group and not yet acknowledged, once there are some (the
    deadline only bounds a failure: events flow, so a batch is read every moment)."""
    deadline = time.monotonic() + 30
    while (pending := group_state(client, stream)[0]) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    return pending


def inspect_store(dsn: str) -> dict:  # type: ignore[type-arg]
    result = subprocess.run(
        [sys.executable, "-m", "tests.analytics.inspect_store", dsn, DATABASE],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return json.loads(result.stdout)


@pytest.mark.timeout(600)  # paced publishing alone is a minute; restarts are slow on a slow machine
def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    redis_url: str, log_dir: Path, tmp_path: Path
) -> None:
    stream = f"test.analytics.crash.{uuid.uuid4().hex[:8]}"
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    env = {
        "REDIS_URL": redis_url, "WATCHLLM_CLICKHOUSE_URL": dsn, "WATCHLLM_EVENTS_STREAM": stream,
        "WATCHLLM_ANALYTICS_BATCH_MAX_ROWS": "2000", "WATCHLLM_ANALYTICS_BATCH_MAX_SECONDS": "0.25",
        "WATCHLLM_ANALYTICS_RECLAIM_IDLE_MS": "1500", "WATCHLLM_ANALYTICS_MAX_DELIVERIES": "10",
        "WATCHLLM_ANALYTICS_MONITOR_SECONDS": "0.5",
    }  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    events: list[RequestCompleted] = []
    hurry = threading.Event()
    publisher = threading.Thread(target=publish_paced, args=(client, stream, events, hurry))
    consumers = iter(["crash-a", "crash-a", "crash-b", "crash-b", "crash-c"])
    service = start_analytics(env, next(consumers), log_dir)
    unstored_at_kill = []
    try:
        publisher.start()
        for _ in range(KILLS):
            time.sleep(random.uniform(0.3, 0.9))
            unstored_at_kill.append(wait_for_unstored(client, stream))
            service.kill()  # SIGKILL, with a batch read and not yet acknowledged
            service = start_analytics(env, next(consumers), log_dir)
        hurry.set()
        publisher.join()
        deadline = time.monotonic() + 120  # bounds a failure only
        while group_state(client, stream) != (0, 0):
            assert time.monotonic() < deadline, f"still {group_state(client, stream)}"
            time.sleep(0.2)
        # SIGTERM: drain and exit (uvicorn re-raises the signal once shut down cleanly).
        assert service.stop() in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in service.log()
    finally:
        hurry.set()  # the publisher stops pacing, publishes the rest and ends
        if publisher.is_alive():
            publisher.join()
        service.kill()
        client.delete(stream, f"{stream}.dlq")
    assert all(n > 0 for n in unstored_at_kill), unstored_at_kill

    stored = inspect_store(dsn)
    duplicated = {i: n for i, n in stored["ids"].items() if n != 1}
    assert not duplicated
    assert set(stored["ids"]) == {str(e.event_id) for e in events}
    assert stored["rows"] == len(events) >= EVENTS
    assert stored["prompt_tokens"] == sum(e.prompt_tokens for e in events)
    assert stored["completion_tokens"] == sum(e.completion_tokens for e in events)
    published_cost = sum((e.cost_usd for e in events), Decimal(0))
    assert Decimal(stored["cost_usd"]) == published_cost
    assert Decimal(stored["cost_saved_usd"]) == sum((e.cost_saved_usd for e in events), Decimal(0))
    rollup = stored["rollup"]
    assert int(rollup["requests"]) == len(events)
    assert Decimal(rollup["cost_usd"]) == published_cost
