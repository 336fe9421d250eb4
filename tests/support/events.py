"""Reading request-completed events back from their stream, as analytics will."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from watchllm_shared.contracts import RequestCompleted


def read_events(redis_url: str, stream: str) -> list[RequestCompleted]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(stream)
    finally:
        client.close()
    return [RequestCompleted.from_stream_fields(fields) for _, fields in entries]


def wait_for_events(
    redis_url: str,
    stream: str,
    predicate: Callable[[RequestCompleted], bool],
    count: int = 1,
    timeout: float = 30.0,
) -> list[RequestCompleted]:
    """The events matching ``predicate`` once there are ``count`` of them (or fail after
    ``timeout``, which only bounds a failure: a gateway publishes within milliseconds)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in read_events(redis_url, stream) if predicate(e)]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"expected {count} events, found {len(found)}: {found}"
            return found
        time.sleep(0.05)
