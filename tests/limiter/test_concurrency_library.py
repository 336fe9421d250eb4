"""Concurrency limits in the limiter's Redis library (issue 22, finding 7), against real
Redis: requests in flight per project and per key, decided in the same atomic check as
the rate limits, released by ZREM, renewed by lease, lapsed when nobody renews them.
Times are the tests' own milliseconds (``now``), so nothing here races a clock."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from watchllm_shared.contracts.limits import (
    CHECK_FUNCTION,
    RENEW_FUNCTION,
    LimitDecision,
    check_keys,
    inflight_key,
    limits_key,
)

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000
LEASE = 30_000


class Tenant:
    def __init__(self, redis: aioredis.Redis, project: uuid.UUID | None = None) -> None:
        self.redis = redis
        self.project, self.key = project or uuid.uuid4(), uuid.uuid4()
        self.counter = 0

    async def limits(self, **fields: int) -> None:
        mapping = {k.replace("key_", f"k:{self.key}:"): v for k, v in fields.items()}
        await self.redis.hset(limits_key(self.project), mapping=mapping)  # type: ignore[arg-type]

    async def start(self, now: int, default: int | str = "") -> tuple[str, LimitDecision]:
        self.counter += 1
        request = f"{self.key}-r{self.counter}"
        keys = check_keys(self.project, self.key)
        reply = await self.redis.fcall(
            CHECK_FUNCTION, len(keys), *keys, str(self.key), 10**9, request, now, default, LEASE
        )  # fmt: skip
        return request, LimitDecision.from_reply(reply)

    async def end(self, request: str) -> None:
        await self.redis.zrem(inflight_key(self.project), request)
        await self.redis.zrem(inflight_key(self.project, self.key), request)

    async def renew(self, now: int, *requests: str) -> int:
        keys = [inflight_key(self.project), inflight_key(self.project, self.key)]
        return int(await self.redis.fcall(RENEW_FUNCTION, 2, *keys, LEASE, now, *requests))

    async def in_flight(self, key: bool = False) -> set[bytes]:
        scope = inflight_key(self.project, self.key if key else None)
        return set(await self.redis.zrange(scope, 0, -1))


async def test_a_project_holds_at_most_its_limit_and_a_refusal_takes_nothing(
    redis: aioredis.Redis,
) -> None:
    tenant = Tenant(redis)
    await tenant.limits(conc=3, rpm=100)
    started = [await tenant.start(T0 + i) for i in range(3)]
    assert all(d.allowed for _, d in started)
    assert [d.concurrency_remaining for _, d in started] == [2, 1, 0]
    assert started[0][1].concurrency_limit == 3
    _, refused = await tenant.start(T0 + 10)
    assert not refused.allowed and refused.refused_by_concurrency
    assert refused.concurrency_remaining == 0 and refused.retry_after_ms == 1000
    assert len(await tenant.in_flight()) == 3
    # Nothing changed on refusal: the rpm log holds the three admitted requests only.
    assert refused.requests_remaining == 97
    await tenant.end(started[0][0])
    again, admitted = await tenant.start(T0 + 20)
    still = {r.encode() for r, _ in started[1:]}
    assert admitted.allowed and await tenant.in_flight() == still | {again.encode()}


async def test_the_gateways_default_applies_unless_the_project_has_its_own(
    redis: aioredis.Redis,
) -> None:
    tenant = Tenant(redis)
    assert (await tenant.start(T0, default=1))[1].allowed
    assert not (await tenant.start(T0 + 1, default=1))[1].allowed
    await tenant.limits(conc=2)
    decision = (await tenant.start(T0 + 2, default=1))[1]
    assert decision.allowed and decision.concurrency_limit == 2
    # Without a default nor a project limit, no concurrency limit applies at all.
    other = Tenant(redis)
    free = (await other.start(T0))[1]
    assert free.allowed and free.concurrency_limit is None and not await other.in_flight()


async def test_a_key_limit_binds_its_key_only_within_the_project_limit(
    redis: aioredis.Redis,
) -> None:
    first = Tenant(redis)
    second = Tenant(redis, first.project)
    await first.limits(conc=3, key_conc=1)
    assert (await first.start(T0))[1].allowed
    refused = (await first.start(T0 + 1))[1]
    assert not refused.allowed and refused.refused_by_concurrency
    assert refused.concurrency_limit == 1
    assert (await second.start(T0 + 2))[1].allowed
    assert (await second.start(T0 + 3))[1].allowed
    assert not (await second.start(T0 + 4))[1].allowed  # the project's 3
    assert len(await first.in_flight()) == 3 and len(await first.in_flight(key=True)) == 1


async def test_a_rate_refusal_is_named_as_such_and_takes_no_slot(redis: aioredis.Redis) -> None:
    tenant = Tenant(redis)
    await tenant.limits(conc=5, rpm=1)
    assert (await tenant.start(T0))[1].allowed
    refused = (await tenant.start(T0 + 1))[1]
    assert not refused.allowed and not refused.refused_by_concurrency
    assert refused.concurrency_remaining == 4  # the refused request holds nothing
    assert len(await tenant.in_flight()) == 1


async def test_unrenewed_slots_lapse_after_their_lease_and_renewed_ones_stay(
    redis: aioredis.Redis,
) -> None:
    """What a SIGKILLed replica leaves: slots nobody renews. They stop counting once
    their lease ends; a live replica's renewed slot keeps counting."""
    tenant = Tenant(redis)
    await tenant.limits(conc=2)
    dead, _ = await tenant.start(T0)
    alive, _ = await tenant.start(T0)
    assert not (await tenant.start(T0 + 1))[1].allowed
    assert await tenant.renew(T0 + LEASE // 2, alive) == 1  # no key limit: one set
    after_lease = T0 + LEASE + 1
    newcomer, decision = await tenant.start(after_lease)
    assert decision.allowed and decision.concurrency_remaining == 0
    assert await tenant.in_flight() == {alive.encode(), newcomer.encode()}
    assert not (await tenant.start(after_lease + 1))[1].allowed
    # A released slot is not taken again by a late renewal.
    await tenant.end(alive)
    assert await tenant.renew(after_lease + 2, alive) == 0
    assert await tenant.in_flight() == {newcomer.encode()}


async def test_callers_before_version_7_get_no_concurrency_limit(redis: aioredis.Redis) -> None:
    """A gateway of the previous version passes eight keys and four arguments."""
    tenant = Tenant(redis)
    await tenant.limits(conc=1)
    keys = check_keys(tenant.project, tenant.key)[:8]
    for i in range(3):
        reply = await redis.fcall(CHECK_FUNCTION, 8, *keys, str(tenant.key), 10**9, f"r{i}", T0)
        assert LimitDecision.from_reply(reply).allowed
    assert not await tenant.in_flight()
