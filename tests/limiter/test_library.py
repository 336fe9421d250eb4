"""The limiter's Redis Functions library against real Redis: exact windows, nothing
consumed by a refusal, idempotent token charges, in-place upgrades."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchllm_limiter.library import ensure_library, library_source, loaded_version
from watchllm_shared.contracts.limits import (
    CHARGE_FUNCTION,
    CHECK_FUNCTION,
    LimitDecision,
    charge_keys,
    check_keys,
    limits_key,
)

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
T0 = 1_790_000_000_000 - (1_790_000_000_000 % DAY_MS) + 3_600_000  # 01:00 UTC some day


class Subject:
    """One project + key with its own keys in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.project, self.key = uuid.uuid4(), uuid.uuid4()
        self.counter = 0

    async def limits(self, **fields: int) -> None:
        mapping = {k.replace("key_", f"k:{self.key}:"): v for k, v in fields.items()}
        await self.redis.hset(limits_key(self.project), mapping=mapping)  # type: ignore[arg-type]

    async def check(self, now_ms: int, day_fallback: int = 10**9) -> LimitDecision:
        self.counter += 1
        keys = check_keys(self.project, self.key)
        reply = await self.redis.fcall(
            CHECK_FUNCTION, len(keys), *keys, str(self.key),
            day_fallback, f"r{self.counter}", now_ms,
        )  # fmt: skip
        return LimitDecision.from_reply(reply)

    async def charge(self, event: str, tokens: int, at_ms: int, now_ms: int) -> int:
        return int(
            await self.redis.fcall(
                CHARGE_FUNCTION,
                len(charge_keys(self.project, self.key)),
                *charge_keys(self.project, self.key),
                str(self.key),
                event,
                tokens,
                at_ms,
                now_ms,
            )  # fmt: skip
        )


class ReferenceWindow:
    """The obvious model: admit iff fewer than ``limit`` admissions in (t - 60 s, t]."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: deque[int] = deque()

    def admit(self, now: int) -> bool:
        while self.admitted and self.admitted[0] <= now - 60_000:
            self.admitted.popleft()
        if len(self.admitted) < self.limit:
            self.admitted.append(now)
            return True
        return False


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(min_value=1, max_value=8),
    gaps=st.lists(st.integers(min_value=0, max_value=30_000), min_size=1, max_size=60),
)
async def test_sliding_minute_matches_the_reference_model(
    redis: aioredis.Redis, limit: int, gaps: list[int]
) -> None:
    subject = Subject(redis)
    await subject.limits(key_rpm=limit)
    reference = ReferenceWindow(limit)
    now = T0
    for gap in gaps:
        now += gap
        decision = await subject.check(now)
        assert decision.allowed == reference.admit(now), f"at +{now - T0} ms"
        if not decision.allowed:
            # retry-after is exactly when the reference model admits again.
            retry_at = now + decision.retry_after_ms
            assert reference.admitted[len(reference.admitted) - limit] + 60_000 == retry_at


class ReferenceTokens:
    """Admit iff the tokens charged in (t - 60 s, t] are under ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.charges: list[tuple[int, int]] = []

    def used(self, now: int) -> int:
        return sum(tokens for at, tokens in self.charges if at > now - 60_000)

    def admit(self, now: int) -> bool:
        return self.used(now) < self.limit


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(min_value=1, max_value=500),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=25_000), st.integers(0, 200)),
        min_size=1, max_size=50,
    ),
)  # fmt: skip
async def test_token_window_matches_the_reference_model(
    redis: aioredis.Redis, limit: int, steps: list[tuple[int, int]]
) -> None:
    """Random checks, each followed by a charge of its usage (0 = nothing charged)."""
    subject = Subject(redis)
    await subject.limits(key_tpm=limit)
    reference = ReferenceTokens(limit)
    now = T0
    for i, (gap, tokens) in enumerate(steps):
        now += gap
        decision = await subject.check(now)
        assert decision.allowed == reference.admit(now), f"step {i} at +{now - T0} ms"
        assert decision.tokens_remaining == max(0, limit - reference.used(now))
        if decision.allowed and tokens:
            await subject.charge(f"ev-{i}", tokens, now, now)
            reference.charges.append((now, tokens))
        if not decision.allowed:
            later = now + decision.retry_after_ms
            assert reference.admit(later) and not reference.admit(later - 1)


async def test_refused_requests_consume_nothing_from_any_limit(redis: aioredis.Redis) -> None:
    subject = Subject(redis)
    await subject.limits(rpm=100, key_rpm=2, day=1000)
    assert [(await subject.check(T0 + i)).allowed for i in range(5)] == [True] * 2 + [False] * 3
    # The project window saw only the two admitted requests.
    other = Subject(redis)
    other.project = subject.project
    await other.limits(rpm=100, day=1000)
    decision = await other.check(T0 + 10)
    assert decision.allowed and decision.requests_remaining == 100 - 3


async def test_day_quota_is_a_calendar_utc_day(redis: aioredis.Redis) -> None:
    subject = Subject(redis)
    await subject.limits(day=3)
    results = [await subject.check(T0 + i * 1000) for i in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    midnight = T0 - 3_600_000 + DAY_MS
    assert results[-1].retry_after_ms == midnight - (T0 + 3000)
    assert results[0].request_limit == 3 and results[0].requests_remaining == 2
    after = await subject.check(midnight)
    assert after.allowed and after.requests_remaining == 2


async def test_day_counts_expire_two_days_on_and_old_days_are_dropped(
    redis: aioredis.Redis,
) -> None:
    """The day hash is housekept on each day's first request only: it lives two days
    past that request, and the day before yesterday's count goes."""
    subject = Subject(redis)
    day_key = check_keys(subject.project, subject.key)[1]
    day = T0 // DAY_MS
    for offset in range(3):  # three consecutive days, two requests each
        await subject.check(T0 + offset * DAY_MS)
        await subject.check(T0 + offset * DAY_MS + 1000)
    counts = await redis.hgetall(day_key)
    assert counts == {str(day + 1).encode(): b"2", str(day + 2).encode(): b"2"}
    assert 2 * DAY_MS - 60_000 < await redis.pttl(day_key) <= 2 * DAY_MS


async def test_plan_fallback_applies_until_the_limiter_synced_the_project(
    redis: aioredis.Redis,
) -> None:
    subject = Subject(redis)
    assert (await subject.check(T0, day_fallback=1)).allowed
    assert not (await subject.check(T0 + 1, day_fallback=1)).allowed


async def test_token_limit_refuses_once_charged_and_charges_are_idempotent(
    redis: aioredis.Redis,
) -> None:
    subject = Subject(redis)
    await subject.limits(key_tpm=100)
    first = await subject.check(T0)
    assert first.allowed and first.token_limit == 100 and first.tokens_remaining == 100
    assert await subject.charge("ev-1", 60, T0 + 500, T0 + 500) == 1
    assert await subject.charge("ev-1", 60, T0 + 500, T0 + 600) == 0  # redelivered
    assert (await subject.check(T0 + 700)).tokens_remaining == 40
    await subject.charge("ev-2", 50, T0 + 800, T0 + 800)
    refused = await subject.check(T0 + 900)
    assert not refused.allowed and refused.tokens_remaining == 0
    # 110 tokens: the window is under 100 again once ev-1 (60) leaves at T0 + 60.5 s.
    assert refused.retry_after_ms == T0 + 500 + 60_000 - (T0 + 900)
    assert (await subject.check(T0 + 60_501)).allowed


async def test_charges_older_than_the_window_or_without_a_limit_cost_nothing(
    redis: aioredis.Redis,
) -> None:
    subject = Subject(redis)
    assert await subject.charge("ev", 10, T0, T0) == 0  # no token limit configured
    await subject.limits(tpm=10)
    assert await subject.charge("ev-old", 10, T0 - 61_000, T0) == 0
    assert await subject.charge("ev-new", 10, T0, T0) == 1


async def test_upgrading_the_library_under_load_drops_no_request_and_keeps_counts_exact(
    redis: aioredis.Redis,
) -> None:
    subject = Subject(redis)
    limit = 300
    await subject.limits(key_rpm=limit)
    current = await loaded_version(redis)
    assert current is not None

    keys = check_keys(subject.project, subject.key)

    async def hammer(worker: int) -> list[bool]:
        outcomes = []
        for i in range(60):
            reply = await redis.fcall(
                CHECK_FUNCTION, len(keys), *keys, str(subject.key),
                10**9, f"w{worker}-{i}", T0 + i,
            )  # fmt: skip
            outcomes.append(LimitDecision.from_reply(reply).allowed)
        return outcomes

    async def upgrade() -> None:
        for version in range(current + 1, current + 6):
            await ensure_library(redis, library_source(version))
            await asyncio.sleep(0.005)

    *results, _ = await asyncio.gather(*(hammer(w) for w in range(8)), upgrade())
    admitted = sum(sum(r) for r in results)
    assert admitted == limit and sum(len(r) for r in results) == 480
    assert await loaded_version(redis) == current + 5
    # An older limiter starting late never downgrades the library.
    assert await ensure_library(redis, library_source(current)) == current + 5
    await redis.function_load(library_source(current), replace=True)


async def test_a_huge_charge_is_written_in_digits_and_checks_keep_working(
    redis: aioredis.Redis,
) -> None:
    """10^14 tokens (charged by hand: the limiter refuses such events) used to be logged
    as '<id>:1e+14', which broke every later check of the project with a Lua error."""
    subject = Subject(redis)
    await subject.limits(tpm=1000)
    assert await subject.charge("ev-huge", 10**14, T0, T0) == 1
    log = await redis.zrange(charge_keys(subject.project, subject.key)[1], 0, -1)
    assert log == [b"ev-huge:100000000000000"]
    refused = await subject.check(T0 + 1000)
    assert not refused.allowed and refused.retry_after_ms == 59_000
    assert (await subject.check(T0 + 60_001)).allowed


async def test_members_in_an_old_or_unreadable_form_do_not_break_checks(
    redis: aioredis.Redis,
) -> None:
    """Version 3 wrote charges of 10^14 tokens or more in exponent form: they are still
    counted (the running total includes them) and leave the window on time; a member
    that cannot be read at all counts as 0 tokens."""
    subject = Subject(redis)
    await subject.limits(tpm=1000)
    keys = charge_keys(subject.project, subject.key)
    log_key, total_key = keys[1], keys[3]
    await redis.zadd(log_key, {"ev-old:1e+14": T0, "ev-bad:lots": T0 + 10, "ev-ok:7": T0 + 20})
    await redis.set(total_key, 10**14 + 7, px=60_000)  # as version 3's INCRBY left it
    refused = await subject.check(T0 + 1000)
    assert not refused.allowed and refused.retry_after_ms == 59_000
    later = await subject.check(T0 + 60_001)  # the old member left: 7 tokens remain
    assert later.allowed and later.tokens_remaining == 1000 - 7
    # A lost total is rebuilt from the log, unreadable members and all.
    await redis.zadd(log_key, {"ev-old2:1e+14": T0 + 61_000, "ev-bad2:": T0 + 61_000})
    await redis.delete(total_key)
    rebuilt = await subject.check(T0 + 61_500)
    assert not rebuilt.allowed and rebuilt.retry_after_ms == 59_500
    assert await redis.get(total_key) == b"100000000000000"  # in digits, not 1e+14


async def test_a_limit_of_zero_refuses_instead_of_breaking_the_check(
    redis: aioredis.Redis,
) -> None:
    subject = Subject(redis)
    await subject.limits(key_rpm=0, day=1000)  # the database forbids it; a hand edit may not
    decision = await subject.check(T0)  # before: a Lua error, which the gateway fails open on
    assert not decision.allowed and decision.retry_after_ms == 60_000
    assert await redis.hgetall(check_keys(subject.project, subject.key)[1]) == {}  # no day count


async def test_a_refusal_reports_the_limit_that_refused_it(redis: aioredis.Redis) -> None:
    subject = Subject(redis)
    await subject.limits(day=2, key_rpm=1)
    assert (await subject.check(T0)).allowed
    refused = await subject.check(T0 + 1000)  # day: 1 left; key rpm: full
    assert not refused.allowed and refused.requests_remaining == 0
    assert refused.request_limit == 1 and refused.requests_reset_ms == 59_000


async def test_a_running_total_never_outlives_its_log(redis: aioredis.Redis) -> None:
    subject = Subject(redis)
    await subject.limits(key_tpm=1000)
    keys = check_keys(subject.project, subject.key)
    key_log, key_total = keys[5], keys[7]
    assert await subject.charge("e1", 500, T0, T0) == 1
    await redis.pexpire(key_log, 20_000)  # its last charge was 40 s ago (Redis's clock)
    await redis.delete(key_total)  # lost (eviction, a flush): rebuilt from the log
    assert (await subject.check(T0 + 1)).tokens_remaining == 500
    # Expiry instants (PEXPIRETIME), not PTTLs read one after the other, which differ by
    # the time between the reads. The function reads the log's PTTL and gives it to the
    # total, so Redis's clock can move on in between (a millisecond, more under load);
    # a fresh minute instead would put the total 40 s past its log.
    log_expires = await redis.pexpiretime(key_log)
    total_expires = await redis.pexpiretime(key_total)
    assert log_expires > 0 and abs(total_expires - log_expires) < 1_000
    await redis.delete(key_log)  # the log expired first: nothing is left in the window
    assert (await subject.check(T0 + 2)).tokens_remaining == 1000
    assert await redis.exists(key_total) == 0
