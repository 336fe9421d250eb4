"""SIGTERM of an analytics process busy with a backlog: it exits 0 within seconds and
leaves nothing it stored pending (it stops on a flag, not a cancellation: see
``watchllm_shared.stopping``). It used to exit "killed by SIGTERM" (-15) even after a
clean shutdown, which a supervisor cannot tell from one cut short."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from tests.analytics.conftest import make_event
from tests.analytics.test_crash import start_analytics
from tests.support.shutdown import (
    STOP_BOUND_SECONDS,
    entries_read,
    pending_of,
    sigterm,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 40_000


def test_sigterm_stops_a_busy_analytics_service_promptly_with_its_work_acknowledged(
    redis_url: str, log_dir: Path, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = f"test.analytics.shutdown.{uuid.uuid4().hex[:8]}"
    try:
        pipe = client.pipeline(transaction=False)
        for _ in range(BACKLOG):
            pipe.xadd(stream, make_event().to_stream_fields())  # type: ignore[arg-type]
        pipe.execute()
        env = {"REDIS_URL": redis_url, "WATCHLLM_EVENTS_STREAM": stream,
               "WATCHLLM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}"}  # fmt: skip
        service = start_analytics(env, "shutdown", log_dir)
        wait_until(lambda: entries_read(client, stream, "analytics") > 0,
                   "the analytics service reads the backlog")  # fmt: skip
        stopped = sigterm(service)
        assert stopped.returncode == 0, (stopped, service.log()[-3000:])
        assert stopped.seconds < STOP_BOUND_SECONDS
        assert pending_of(client, stream, "analytics", "shutdown") == []
        assert entries_read(client, stream, "analytics") < BACKLOG  # stopped mid-backlog
    finally:
        client.delete(stream, f"{stream}.dlq")
        client.close()
