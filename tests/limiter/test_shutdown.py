"""SIGTERM of a limiter process busy with a backlog: it exits 0 within seconds and leaves
nothing it handled pending.

It used to hang in "Waiting for application shutdown" until killed (Python 3.11's
``wait_for`` inside redis-py lost the cancellation of the busy charger: see
``watchllm_shared.stopping``), or to stop between a batch's charges and its XACK.

"Busy" is checked, not hoped for: a stop counts only if entries were still unread
after it, so the SIGTERM landed while the limiter had work. How much it reads before
the SIGTERM lands depends on the machine (~14,000 entries/s here, and the test process
may be scheduled late): a stop that found the backlog finished is checked all the same,
then done again with twice the backlog.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.support.processes import start_limiter
from tests.support.shutdown import (
    STOP_BOUND_SECONDS,
    entries_read,
    pending_of,
    sigterm,
    unread,
    wait_until,
)
from watchllm_shared.contracts import RequestCompleted, RequestStatus

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKLOG = 30_000
STOPS = 3  # the hang needed the cancel to land in one place: each stop is another chance
ATTEMPTS = 5  # per stop, the backlog doubling each time: up to 16 times BACKLOG


def backlog(client: redis.Redis, stream: str, count: int = BACKLOG) -> None:
    """Events to charge (a few keys), events with nothing to charge, and some poison."""
    keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(4)]
    pipe = client.pipeline(transaction=False)
    for i in range(count):
        if i % 40 == 0:
            pipe.xadd(stream, {"data": b"{not json"})
            continue
        project, key = keys[i % len(keys)] if i % 3 else (None, None)
        event = RequestCompleted(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), request_id=f"r{i}",
            project_id=project, key_id=key, endpoint="/v1/chat/completions", http_status=200,
            status=RequestStatus.OK, prompt_tokens=3, completion_tokens=2, latency_ms=1,
        )  # fmt: skip
        pipe.xadd(stream, event.to_stream_fields())  # type: ignore[arg-type]
    pipe.execute()


def test_sigterm_stops_a_busy_limiter_promptly_with_its_work_acknowledged(
    redis_url: str, database_url: str, log_dir: Path, limiter_library: None
) -> None:
    client = redis.Redis.from_url(redis_url)
    stream = f"test.limiter.shutdown.{uuid.uuid4().hex}"
    try:
        for stop in range(STOPS):
            size = BACKLOG
            for attempt in range(ATTEMPTS):
                backlog(client, stream, max(0, size - unread(client, stream, "limiter")))
                consumer = f"shutdown-{stop}-{attempt}-{uuid.uuid4().hex[:6]}"
                before = entries_read(client, stream, "limiter")  # it may read before ready
                limiter = start_limiter(
                    {"REDIS_URL": redis_url, "DATABASE_URL": database_url,
                     "WATCHLLM_EVENTS_STREAM": stream, "WATCHLLM_LIMITER_CONSUMER_NAME": consumer},
                    log_dir,
                )  # fmt: skip
                wait_until(lambda: entries_read(client, stream, "limiter") > before,  # noqa: B023
                           "the limiter reads the backlog")  # fmt: skip
                stopped = sigterm(limiter)
                assert stopped.returncode == 0, (stopped, limiter.log()[-3000:])
                assert stopped.seconds < STOP_BOUND_SECONDS
                assert pending_of(client, stream, "limiter", consumer) == []
                if unread(client, stream, "limiter") > 0:
                    break  # it stopped with work left: the SIGTERM landed while it was busy
                size *= 2
            else:
                raise AssertionError(f"the limiter finished {size // 2} entries every time"
                                     " before its SIGTERM landed")  # fmt: skip
    finally:
        client.delete(stream, f"{stream}.dlq")
        client.close()
