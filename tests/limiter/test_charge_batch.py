"""Charging a batch (issue 21): one ``watchllm_charge_batch`` per project per batch.

What a user checks: every event of a batch of many projects and keys is charged to its
own project's and key's tokens and spend exactly once, whether it was charged before
by an older limiter one event at a time, or by a consumer killed between a batch's
charge and its XACK; a bad value charges nothing and shifts nothing; a stop during the
gathering wait charges and acknowledges what was read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from decimal import Decimal

import redis.asyncio as aioredis
from pytest import mark

from tests.limiter.test_spend_charges import spent_today
from tests.limiter.test_token_charger import charged, drained, event, run_until_drained
from watchllm_limiter.charges import MAX_EVENTS_PER_CALL, TokenCharger, charge_batch_call
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.budgets import SPEND_FUNCTION, charge_spend_keys, spend_keys
from watchllm_shared.contracts.limits import (
    CHARGE_BATCH_FUNCTION,
    CHARGE_FUNCTION,
    charge_batch_keys,
    charge_keys,
    limits_key,
)

pytestmark = mark.integration

NOW = 1_780_000_000_000  # a Redis-clock millisecond, passed explicitly


def costing(project: uuid.UUID, key: uuid.UUID, tokens: int, usd: str) -> RequestCompleted:
    return event(project, key, tokens).model_copy(update={"cost_usd": Decimal(usd)})


async def test_one_call_charges_each_event_once_to_its_own_key(redis: aioredis.Redis) -> None:
    project, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={"tpm": 10**6, f"k:{first}:tpm": 10**6,
                                                   f"k:{second}:tpm": 10**6})  # fmt: skip
    old, new, free, bad = (str(uuid.uuid4()) for _ in range(4))
    # An older limiter charged `old` one event at a time (library functions before 9).
    keys = charge_keys(project, first)
    assert await redis.fcall(CHARGE_FUNCTION, len(keys), *keys, str(first), old, 5, NOW, NOW) == 2
    keys = charge_spend_keys(project, first, uuid.UUID(old))
    assert await redis.fcall(SPEND_FUNCTION, len(keys), *keys, 1_000, NOW, NOW) == 1
    costed = [uuid.UUID(e) for e in (old, new, bad, new)]  # the copy of `new`: its marker too
    keys = charge_batch_keys(project, [first, second], costed)
    args = [NOW, 2, str(first), str(second),
            1, old, 5, NOW, 1_000,  # charged before: nothing more
            2, new, 7, NOW, 2_000,
            1, free, 11, NOW, 0,  # tokens, no cost
            9, bad, 13, NOW, 4_000,  # no such key in the call: nothing, its marker skipped
            2, new, 7, NOW, 2_000]  # fmt: skip
    reply = await redis.fcall(CHARGE_BATCH_FUNCTION, len(keys), *keys, *args)
    assert reply == [0, 0, 2, 1, 2, 0, 0, 0, 0, 0]
    project_total = charge_batch_keys(project, [], [])[2]
    assert int(await redis.get(project_total) or 0) == 5 + 7 + 11
    assert int(await redis.get(charge_keys(project, first)[4]) or 0) == 5 + 11
    assert int(await redis.get(charge_keys(project, second)[4]) or 0) == 7
    spend = [await redis.hvals(k) for k in spend_keys(project, first) + spend_keys(project, second)]
    assert [[int(v) for v in values] for values in spend] == [
        [3_000], [3_000], [1_000], [1_000],  # project day, month; first key day, month
        [3_000], [3_000], [2_000], [2_000],  # the project's again; second key day, month
    ]  # fmt: skip


async def test_a_batch_of_many_projects_is_charged_once_per_event(redis: aioredis.Redis) -> None:
    stream = f"test.limiter.{uuid.uuid4().hex}"
    subjects = [(uuid.uuid4(), uuid.uuid4()) for _ in range(3)]
    subjects.append((subjects[0][0], uuid.uuid4()))  # a second key of the first project
    for project, key in subjects:
        await redis.hset(limits_key(project), mapping={"tpm": 10**6, f"k:{key}:tpm": 10**6})
    sent: list[RequestCompleted] = []
    for i in range(24):  # tokens 1..24, a cost on two events in three
        project, key = subjects[i % 4]
        sent.append(costing(project, key, i + 1, "0.000001" if i % 3 else "0"))
    for copy in sent:
        await redis.xadd(stream, copy.to_stream_fields())  # type: ignore[arg-type]
    await redis.xadd(stream, sent[5].to_stream_fields())  # type: ignore[arg-type]  # a copy
    await redis.xadd(stream, {"data": b"{not json"})
    await run_until_drained(settled(redis, stream), redis, stream)
    for project, key in subjects:
        mine = [e for e in sent if e.key_id == key]
        assert await charged(redis, project, key) == sum(e.prompt_tokens for e in mine)
        nanos = 1_000 * sum(1 for e in mine if e.cost_usd)
        assert (await spent_today(redis, project, key))[2:] == [nanos, nanos]
    first = subjects[0][0]
    nanos = 1_000 * sum(1 for e in sent if e.project_id == first and e.cost_usd)
    assert (await spent_today(redis, first, subjects[0][1]))[:2] == [nanos, nanos]
    assert len(await redis.xrange(f"{stream}.dlq")) == 1


async def test_a_consumer_killed_between_a_batchs_charge_and_its_ack_charges_nothing_twice(
    redis: aioredis.Redis,
) -> None:
    """The dead consumer read a batch of two projects, sent the first project's call (the
    same one the charger sends) and died before the second and before its XACK."""
    stream = f"test.limiter.{uuid.uuid4().hex}"
    (a, a_key), (b, b_key) = (uuid.uuid4(), uuid.uuid4()), (uuid.uuid4(), uuid.uuid4())
    for project, key in ((a, a_key), (b, b_key)):
        await redis.hset(limits_key(project), mapping={f"k:{key}:tpm": 10**6})
    await redis.xgroup_create(stream, "limiter", id="0", mkstream=True)
    for tokens in (3, 4):
        for project, key in ((a, a_key), (b, b_key)):
            copy = costing(project, key, tokens, "0.00002")
            await redis.xadd(stream, copy.to_stream_fields())  # type: ignore[arg-type]
    reply = await redis.xreadgroup("limiter", "dead", {stream: ">"}, count=10)
    batch = [(entry_id, RequestCompleted.from_stream_fields(fields))
             for entry_id, fields in reply[0][1]]  # fmt: skip
    keys, args = charge_batch_call(a, [(i, e) for i, e in batch if e.project_id == a])
    assert await redis.fcall(CHARGE_BATCH_FUNCTION, len(keys), *keys, *args) == [1, 1, 1, 1]
    await asyncio.sleep(0.3)  # idle longer than limiter_reclaim_idle_ms
    await run_until_drained(settled(redis, stream, "survivor"), redis, stream)
    for project, key in ((a, a_key), (b, b_key)):
        assert await charged(redis, project, key) == 7
        assert await spent_today(redis, project, key) == [40_000] * 4
    assert (await redis.xpending(stream, "limiter"))["pending"] == 0


async def test_a_stop_while_gathering_charges_and_acknowledges_what_was_read(
    redis: aioredis.Redis,
) -> None:
    """The gathering wait (5 s here) ends at once when the service stops; the events read
    before and during it are charged and acknowledged, none left pending."""
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={f"k:{key}:tpm": 10**6})
    await redis.xgroup_create(stream, "limiter", id="0", mkstream=True)
    stopping = asyncio.Event()
    task = asyncio.create_task(settled(redis, stream, gather_ms=5_000).run(stopping))
    await redis.xadd(stream, event(project, key, 30).to_stream_fields())  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while (await redis.xpending(stream, "limiter"))["pending"] == 0:  # read, now gathering
        assert time.monotonic() < deadline and not task.done()
        await asyncio.sleep(0.01)
    await redis.xadd(stream, event(project, key, 12).to_stream_fields())  # type: ignore[arg-type]
    stopping.set()
    try:
        # Well within the 5 s wait: the stop ended it (the rest is a read, a call, an ack).
        await asyncio.wait_for(asyncio.shield(task), 4)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await drained(redis, stream)
    assert await charged(redis, project, key) == 42


def settled(
    redis: aioredis.Redis, stream: str, consumer: str = "c1", gather_ms: int = 200
) -> TokenCharger:
    settings = LimiterSettings(
        events_stream=stream, limiter_consumer_group="limiter", limiter_consumer_name=consumer,
        limiter_reclaim_idle_ms=200, limiter_max_deliveries=2, limiter_gather_ms=gather_ms,
    )  # fmt: skip
    return TokenCharger(redis, LimiterMetrics(), settings)


async def test_a_backlog_of_one_project_is_charged_in_bounded_calls(redis: aioredis.Redis) -> None:
    """More events of one project than one call takes (a backlog): all charged, once."""
    stream = f"test.limiter.{uuid.uuid4().hex}"
    project, key = uuid.uuid4(), uuid.uuid4()
    await redis.hset(limits_key(project), mapping={f"k:{key}:tpm": 10**6})
    count = 2 * MAX_EVENTS_PER_CALL + 3
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            pipe.xadd(stream, costing(project, key, i + 1, "0.000001").to_stream_fields())  # type: ignore[arg-type]
        await pipe.execute()
    await run_until_drained(settled(redis, stream), redis, stream)
    assert await charged(redis, project, key) == count * (count + 1) // 2
    assert await spent_today(redis, project, key) == [1_000 * count] * 4
