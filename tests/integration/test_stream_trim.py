"""Streams trimmed to what their consumer groups still need (``stream_trim``), on the
real Redis: processed entries go, an entry a group has not read or acknowledged stays,
and nothing goes while a group that will read the stream does not exist yet."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.processes import start_limiter
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.stream_trim import trim_processed

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def stream_of(redis: aioredis.Redis, entries: int) -> tuple[str, list[bytes]]:
    stream = f"test.trim.{uuid.uuid4().hex}"
    ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(entries)]
    return stream, ids


async def read(redis: aioredis.Redis, stream: str, group: str, count: int) -> list[bytes]:
    reply = await redis.xreadgroup(group, "c1", {stream: ">"}, count=count)
    return [entry_id for _, entries in reply for entry_id, _ in entries]


async def test_entries_every_group_processed_go_and_the_rest_stay(client: aioredis.Redis) -> None:
    stream, ids = await stream_of(client, 10)
    for group in ("analytics", "limiter"):
        await client.xgroup_create(stream, group, id="0")
    await client.xack(stream, "limiter", *await read(client, stream, "limiter", 8))
    analytics = await read(client, stream, "analytics", 6)
    await client.xack(stream, "analytics", *analytics[:3])  # 4th to 6th still pending
    trimmed, missing = await trim_processed(client, stream, ("analytics", "limiter"))
    assert (trimmed, missing) == (3, frozenset())
    assert [entry_id for entry_id, _ in await client.xrange(stream)] == ids[3:]
    await client.xack(stream, "analytics", *analytics[3:])
    await read(client, stream, "analytics", 10)  # the rest, not acknowledged
    assert (await trim_processed(client, stream, ("analytics", "limiter")))[0] == 3
    assert [entry_id for entry_id, _ in await client.xrange(stream)] == ids[6:]
    await client.delete(stream)


async def test_a_group_that_read_everything_leaves_an_empty_stream(
    client: aioredis.Redis,
) -> None:
    stream, _ = await stream_of(client, 5)
    await client.xgroup_create(stream, "cache", id="0")
    await client.xack(stream, "cache", *await read(client, stream, "cache", 5))
    assert await trim_processed(client, stream, ("cache",)) == (5, frozenset())
    assert await client.xlen(stream) == 0
    await client.delete(stream)


async def test_nothing_goes_while_a_group_that_will_read_it_is_missing(
    client: aioredis.Redis,
) -> None:
    """analytics creates its group at its first start and reads from the beginning:
    what the limiter alone processed must wait for it."""
    stream, _ = await stream_of(client, 5)
    await client.xgroup_create(stream, "limiter", id="0")
    await client.xack(stream, "limiter", *await read(client, stream, "limiter", 5))
    assert await trim_processed(client, stream, ("analytics", "limiter")) == (
        0, frozenset({"analytics"}),
    )  # fmt: skip
    assert await client.xlen(stream) == 5
    await client.xgroup_create(stream, "operators", id="0")  # one of ours, not listed
    assert await trim_processed(client, stream, ("limiter",)) == (0, frozenset())
    assert await client.xlen(stream) == 5, "a group nobody listed still holds what it needs"
    assert await trim_processed(client, f"{stream}.absent", ("limiter",)) == (
        0, frozenset({"limiter"}),
    )  # fmt: skip
    await client.delete(stream)


@pytest.mark.slow
async def test_a_running_limiter_trims_the_events_both_groups_processed(
    client: aioredis.Redis, redis_url: str, database_url: str, log_dir: Path
) -> None:
    """The limiter service trims the events stream once analytics (here the test, as its
    group) has processed them too; before, processed events stayed up to MAXLEN."""
    stream = f"test.requests.{uuid.uuid4().hex}"
    await client.xgroup_create(stream, "analytics", id="0", mkstream=True)
    for _ in range(20):
        event = RequestCompleted(
            event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), request_id=uuid.uuid4().hex,
            endpoint="/v1/chat/completions", http_status=200, status=RequestStatus.OK,
            latency_ms=1.0,
        )  # fmt: skip
        await client.xadd(stream, event.to_stream_fields())  # type: ignore[arg-type]
    limiter = start_limiter(
        {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "WATCHLLM_EVENTS_STREAM": stream},
        log_dir,
    )
    try:
        read = await client.xreadgroup("analytics", "a1", {stream: ">"}, count=20)
        await client.xack(stream, "analytics", *[i for _, entries in read for i, _ in entries])
        deadline = time.monotonic() + 60  # bounds a failure: the limiter trims every second
        while await client.xlen(stream) > 0:
            assert time.monotonic() < deadline, f"{await client.xlen(stream)} events left"
            await asyncio.sleep(0.1)
    finally:
        limiter.stop()
        await client.delete(stream)
