"""The consumer reads XREADGROUP replies as hiredis parsed them: the same deliveries over
RESP2 and RESP3, fields as a dict, and entries trimmed while pending as ``None``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from watchllm_analytics.stream_group import GroupConsumer

pytestmark = pytest.mark.integration


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
async def consumer(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[GroupConsumer]:
    client = aioredis.Redis.from_url(redis_url, protocol=request.param)
    consumer = GroupConsumer(
        client, f"test.analytics.group.{uuid.uuid4().hex[:8]}", "g", "c", 60_000
    )
    await consumer.ensure_group()
    yield consumer
    await consumer.aclose()
    await client.delete(consumer.stream)
    await client.aclose()


async def test_new_and_own_pending_entries_are_read_with_their_fields_and_counts(
    consumer: GroupConsumer,
) -> None:
    client, stream = consumer.redis, consumer.stream
    one = await client.xadd(stream, {"data": b"x"})
    two = await client.xadd(stream, {"a": b"1", "b": b"2"})
    new = await consumer.read_new(10, 10)
    assert new == ([one, two], [{b"data": b"x"}, {b"a": b"1", b"b": b"2"}])
    assert await consumer.read_new(10, 1) == ([], [])

    await client.xdel(stream, one)  # as if trimmed by MAXLEN while pending
    again = await consumer.read_own_pending(b"0", 10)
    assert [(d.entry_id, d.fields) for d in again] == [(one, None), (two, {b"a": b"1", b"b": b"2"})]
    assert again[1].deliveries == 2
