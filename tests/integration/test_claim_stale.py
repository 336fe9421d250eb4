"""``claim_stale`` against the real Redis: delivery counts of reclaimed entries are
read right even when other consumers hold entries between them."""

from __future__ import annotations

import uuid

import pytest

from watchllm_shared.redis_io import create_redis
from watchllm_shared.stream_group import claim_stale

pytestmark = pytest.mark.integration


async def test_entries_past_their_deliveries_are_exhausted_whoever_holds_the_rest(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url)
    stream, group = f"test.claim.{uuid.uuid4().hex}", "limiter"
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
        ids = [await redis.xadd(stream, {"data": b"x"}) for _ in range(5)]
        await redis.xreadgroup(group, "dead", {stream: ">"}, count=1)  # ids[0]
        await redis.xreadgroup(group, "live", {stream: ">"}, count=2)  # ids[1], ids[2]
        await redis.xreadgroup(group, "dead", {stream: ">"}, count=2)  # ids[3], ids[4]
        # The dead consumer's poison entries were delivered 9 times and sit idle; ids[4]
        # was delivered once. The live consumer's two are in between, and busy.
        await redis.xclaim(stream, group, "dead", 0, [ids[0], ids[3]], idle=60_000,
                           retrycount=9)  # fmt: skip
        await redis.xclaim(stream, group, "dead", 0, [ids[4]], idle=60_000, retrycount=1)
        await redis.xclaim(stream, group, "live", 0, [ids[1], ids[2]], idle=0)
        retry, exhausted = await claim_stale(redis, stream, group, "me", 30_000, 5, 100)
        assert [entry_id for entry_id, _ in exhausted] == [ids[0], ids[3]]
        assert [entry_id for entry_id, _ in retry] == [ids[4]]
    finally:
        await redis.delete(stream)
        await redis.aclose()
