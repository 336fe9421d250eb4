"""The limiter's event consumer: charges once, parks poison (impossible token counts
too), takes over a dead consumer's pending events."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from watchllm_limiter.charges import MAX_TOKENS_PER_EVENT, TokenCharger, token_count_error
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.contracts.limits import (
    CHECK_FUNCTION,
    LimitDecision,
    charge_keys,
    check_keys,
    limits_key,
)

pytestmark = pytest.mark.integration


def event(project: uuid.UUID, key: uuid.UUID, tokens: int) -> RequestCompleted:
    return RequestCompleted(
        event_id=uuid.uuid4(), occurred_at=datetime.now(UTC), request_id="r",
        project_id=project, key_id=key, endpoint="/v1/chat/completions", http_status=200,
        status=RequestStatus.OK, prompt_tokens=tokens, completion_tokens=0, latency_ms=1,
    )  # fmt: skip


def charger(
    redis: aioredis.Redis, stream: str, consumer: str,
    after_charge: Callable[[Sequence[RequestCompleted]], Awaitable[object]] | None = None,
) -> TokenCharger:  # fmt: skip
    settings = LimiterSettings(
        events_stream=stream, limiter_consumer_group="limiter", limiter_consumer_name=consumer,
        limiter_reclaim_idle_ms=200, limiter_max_deliveries=2,
    )  # fmt: skip
    return TokenCharger(redis, LimiterMetrics(), settings, after_charge=after_charge)


async def drained(redis: aioredis.Redis, stream: str) -> bool:
    """The limiter's group has read every entry of the stream and has none pending."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet
        return False
    last = (await redis.xinfo_stream(stream))["last-generated-id"]
    return any(g["name"] == b"limiter" and g["last-delivered-id"] == last and g["pending"] == 0
               for g in groups)  # fmt: skip


async def run_until_drained(charger: TokenCharger, redis: aioredis.Redis, stream: str) -> None:
    """Run the charger until it has handled (charged or parked, and acknowledged) the
    whole stream, however long that takes this machine; the deadline bounds a failure."""
    stopping = asyncio.Event()
    task = asyncio.create_task(charger.run(stopping))
    deadline = time.monotonic() + 30
    try:
        while not await drained(redis, stream):
            assert not task.done(), task
            assert time.monotonic() < deadline, "events left unread or unacknowledged"
            await asyncio.sleep(0.02)
    finally:
        # Cancelled at once, and flagged as the service stops it: a cancellation landing
        # inside redis-py's reply wait can be lost on Python 3.11 (the charger then took
        # it for a dropped connection and went on for ever); the flag ends it between
        # rounds. The wait bounds a failure only.
        stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def charged(redis: aioredis.Redis, project: uuid.UUID, key: uuid.UUID) -> int:
    total = await redis.get(charge_keys(project, key)[4])
    return int(total or 0)


async def test_events_are_charged_once_and_poison_is_parked(redis: aioredis.Redis) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={f"k:{key}:tpm": 10_000})
    first = event(project, key, 30)
    await redis.xadd(stream, first.to_stream_fields())  # type: ignore[arg-type]
    await redis.xadd(stream, first.to_stream_fields())  # type: ignore[arg-type]  # redelivered
    await redis.xadd(stream, {"data": b"{not json"})
    await redis.xadd(stream, event(project, key, 12).to_stream_fields())  # type: ignore[arg-type]
    await run_until_drained(charger(redis, stream, "c1"), redis, stream)
    assert await charged(redis, project, key) == 42
    dead = await redis.xrange(f"{stream}.dlq")
    assert len(dead) == 1 and b"unreadable event" in dead[0][1][b"error"]
    assert (await redis.xpending(stream, "limiter"))["pending"] == 0


async def test_a_dead_consumers_pending_events_are_taken_over(redis: aioredis.Redis) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={"tpm": 10_000})
    await redis.xgroup_create(stream, "limiter", id="0", mkstream=True)
    await redis.xadd(stream, event(project, key, 7).to_stream_fields())  # type: ignore[arg-type]
    # A consumer reads the event and dies before acknowledging it.
    await redis.xreadgroup("limiter", "dead", {stream: ">"}, count=10)
    await asyncio.sleep(0.3)  # idle longer than limiter_reclaim_idle_ms
    await run_until_drained(charger(redis, stream, "survivor"), redis, stream)
    assert int(await redis.get(charge_keys(project, key)[3]) or 0) == 7
    assert (await redis.xpending(stream, "limiter"))["pending"] == 0


async def test_impossible_token_counts_are_parked_and_the_project_keeps_its_limits(
    redis: aioredis.Redis,
) -> None:
    """10^14 tokens used to be charged as '<id>:1e+14', after which every check of the
    project failed (and the gateway, failing open, applied no limit at all)."""
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={"day": 1000, "tpm": 10_000})
    negative = event(project, key, 10).model_copy(update={"completion_tokens": -20})
    for poison in (event(project, key, 10**14), negative):
        await redis.xadd(stream, poison.to_stream_fields())  # type: ignore[arg-type]
    await redis.xadd(stream, event(project, key, 25).to_stream_fields())  # type: ignore[arg-type]
    await run_until_drained(charger(redis, stream, "c1"), redis, stream)
    errors = [fields[b"error"] for _, fields in await redis.xrange(f"{stream}.dlq")]
    assert len(errors) == 2
    assert b"absurd token count: 100000000000000 tokens" in errors[0]
    assert b"negative token count" in errors[1]
    assert (await redis.xpending(stream, "limiter"))["pending"] == 0
    keys = check_keys(project, key)
    reply = await redis.fcall(CHECK_FUNCTION, len(keys), *keys, str(key), 1000, "m1", "")
    decision = LimitDecision.from_reply(reply)
    assert decision.allowed and decision.tokens_remaining == 10_000 - 25


def test_the_bound_on_tokens_per_event() -> None:
    project, key = uuid.uuid4(), uuid.uuid4()
    assert token_count_error(event(project, key, MAX_TOKENS_PER_EVENT - 1)) is None
    assert token_count_error(event(project, key, 0)) is None
    error = token_count_error(event(project, key, MAX_TOKENS_PER_EVENT))
    assert error is not None and "absurd" in error


async def test_a_gateway_clock_behind_redis_does_not_shorten_the_window(
    redis: aioredis.Redis,
) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={f"k:{key}:tpm": 1_000})
    skewed = event(project, key, 1_000).model_copy(
        update={"occurred_at": datetime.now(UTC) - timedelta(seconds=59)}
    )  # a gateway whose clock runs 59 s behind Redis's
    await redis.xadd(stream, skewed.to_stream_fields())  # type: ignore[arg-type]
    await run_until_drained(charger(redis, stream, "c1"), redis, stream)
    await asyncio.sleep(1.5)  # past the skewed clock's minute, well within Redis's
    keys = check_keys(project, key)
    reply = await redis.fcall(CHECK_FUNCTION, len(keys), *keys, str(key), 10**9, "m", "")
    decision = LimitDecision.from_reply(reply)
    assert not decision.allowed and decision.tokens_remaining == 0
