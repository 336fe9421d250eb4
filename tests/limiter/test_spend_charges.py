"""The limiter's event consumer charges each event's cost to budgets' spend exactly
once: a copy of an event (a gateway re-sending a batch) and a redelivery after a
consumer died between charging and acknowledging both count once; an impossible cost
is parked, never charged."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import redis.asyncio as aioredis
from pytest import mark

from tests.limiter.test_token_charger import charger, event, run_until_drained
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.budgets import (
    ACKED_MARKER_MS,
    SPEND_FUNCTION,
    charge_spend_keys,
    spend_keys,
    spend_marker_key,
    spend_now,
)
from watchllm_shared.stream_group import entry_ms

pytestmark = mark.integration


def costing(project: uuid.UUID, key: uuid.UUID, usd: str) -> RequestCompleted:
    return event(project, key, 10).model_copy(update={"cost_usd": Decimal(usd)})


async def spent_today(redis: aioredis.Redis, project: uuid.UUID, key: uuid.UUID) -> list[int]:
    """Project day, project month, key day, key month: each hash's one field."""
    totals = []
    for hash_key in spend_keys(project, key):
        fields = await redis.hvals(hash_key)
        assert len(fields) <= 1
        totals.append(int(fields[0]) if fields else 0)
    return totals


async def test_copies_of_an_event_are_charged_once_and_markers_shrink_once_acked(
    redis: aioredis.Redis,
) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    first = costing(project, key, "0.00000345")  # 3,450 nano-dollars
    for fields in (first, first, costing(project, key, "0.0000000375")):  # the last rounds up
        await redis.xadd(stream, fields.to_stream_fields())  # type: ignore[arg-type]
    await run_until_drained(charger(redis, stream, "c1"), redis, stream)
    assert await spent_today(redis, project, key) == [3_450 + 38] * 4
    # What a dashboard or an alert reads (Redis's clock; the charges were just made).
    assert await spend_now(redis, project) == await spend_now(redis, project, key) == (3_488,) * 2
    assert 0 < await redis.pttl(spend_marker_key(project, first.event_id)) <= ACKED_MARKER_MS


async def test_a_consumer_killed_after_charging_is_not_charged_twice(
    redis: aioredis.Redis,
) -> None:
    """The dead consumer's charge landed (the same FCALL the charger sends), its XACK
    never did: the survivor reclaims the event and charges nothing more."""
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.xgroup_create(stream, "limiter", id="0", mkstream=True)
    charged = costing(project, key, "0.002")
    entry = await redis.xadd(stream, charged.to_stream_fields())  # type: ignore[arg-type]
    await redis.xreadgroup("limiter", "dead", {stream: ">"}, count=10)
    keys = charge_spend_keys(project, key, charged.event_id)
    assert await redis.fcall(SPEND_FUNCTION, len(keys), *keys, 2_000_000, entry_ms(entry), "") == 1
    await asyncio.sleep(0.3)  # idle longer than limiter_reclaim_idle_ms
    await run_until_drained(charger(redis, stream, "survivor"), redis, stream)
    assert await spent_today(redis, project, key) == [2_000_000] * 4
    assert (await redis.xpending(stream, "limiter"))["pending"] == 0


async def test_impossible_costs_are_parked(redis: aioredis.Redis) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    for usd in ("-0.5", "1000000", "0.25"):
        await redis.xadd(stream, costing(project, key, usd).to_stream_fields())  # type: ignore[arg-type]
    await run_until_drained(charger(redis, stream, "c1"), redis, stream)
    errors = [fields[b"error"] for _, fields in await redis.xrange(f"{stream}.dlq")]
    assert [b"absurd cost: -0.5 USD" in errors[0], b"absurd cost: 1000000" in errors[1]] == [
        True, True]  # fmt: skip
    assert await spent_today(redis, project, key) == [250_000_000] * 4
