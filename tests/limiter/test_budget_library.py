"""Budgets in the limiter's library against real Redis, on a controlled clock (the
functions take "now" in ms, as the other windows' tests do): spend charged once per
event, refusal once spent, windows that reset at 00:00 UTC and on the first of the
month, counters that expire with their window, nothing consumed by a refusal, and a
request the cache may answer let through to it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from watchllm_shared.contracts.budgets import (
    SPEND_FUNCTION,
    BudgetScope,
    charge_spend_keys,
    day_field,
    month_end_ms,
    month_field,
    spend_keys,
)
from watchllm_shared.contracts.limits import (
    CHECK_FUNCTION,
    LimitDecision,
    check_keys,
    limits_key,
)

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class Subject:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.project, self.key = uuid.uuid4(), uuid.uuid4()
        self.asks = 0

    async def budgets(self, **fields: int) -> None:
        mapping = {k.replace("key_", f"k:{self.key}:"): v for k, v in fields.items()}
        await self.redis.hset(limits_key(self.project), mapping=mapping)  # type: ignore[arg-type]

    async def check(self, now: int, cache_may_answer: bool = False) -> LimitDecision:
        self.asks += 1
        keys = check_keys(self.project, self.key)
        reply = await self.redis.fcall(
            CHECK_FUNCTION, len(keys), *keys, str(self.key), 10**9, f"r{self.asks}", now,
            "", "", "1" if cache_may_answer else "0",
        )  # fmt: skip
        return LimitDecision.from_reply(reply)

    async def charge(
        self, nanos: int, occurred: int, now: int, event: uuid.UUID | None = None
    ) -> int:
        keys = charge_spend_keys(self.project, self.key, event or uuid.uuid4())
        return int(await self.redis.fcall(SPEND_FUNCTION, len(keys), *keys, nanos, occurred, now))

    async def spent(self, scope: BudgetScope, now: int) -> int:
        key = spend_keys(self.project, self.key)[scope - 1]
        field = day_field(now) if scope.period == "daily" else month_field(now)
        return int(await self.redis.hget(key, field) or 0)


@pytest.fixture
def subject(redis: aioredis.Redis) -> Subject:
    return Subject(redis)


async def test_a_daily_budget_refuses_once_spent_and_resets_at_midnight_utc(
    subject: Subject,
) -> None:
    await subject.budgets(bd=1_000, day=100)
    now = at("2026-12-04T22:00:00")
    first = await subject.check(now)
    assert first.allowed and first.budget is not None and not first.budget.refused
    assert (first.budget.scope, first.budget.limit_nanos, first.budget.remaining_nanos) == (
        BudgetScope.PROJECT_DAILY, 1_000, 1_000)  # fmt: skip
    assert await subject.charge(999, now, now) == 1
    assert (await subject.check(now + 1)).allowed  # 1 nano-dollar left
    await subject.charge(600, now + 1, now + 2)  # the request in flight overshoots
    refused = await subject.check(now + 3)
    assert not refused.allowed and refused.budget is not None and refused.budget.refused
    assert refused.budget.spent_nanos == 1_599 and refused.budget.remaining_nanos == 0
    midnight = at("2026-12-05T00:00:00")
    assert (
        refused.budget.reset_at_ms == midnight and refused.budget.reset_at == "2026-12-05T00:00:00Z"
    )
    assert refused.budget.reset_in_ms == midnight - (now + 3)
    # The refusal consumed nothing: the day quota counted the two admitted requests.
    assert refused.requests_remaining == 100 - 2
    assert not (await subject.check(midnight - 1)).allowed
    reset = await subject.check(midnight)
    assert reset.allowed and reset.budget is not None and reset.budget.remaining_nanos == 1_000


async def test_a_monthly_budget_holds_across_days_and_resets_on_the_first(
    subject: Subject,
) -> None:
    await subject.budgets(key_bm=5_000, key_bd=4_000)
    now = at("2026-12-30T12:00:00")
    await subject.charge(3_000, now, now)
    await subject.charge(2_000, now + DAY_MS, now + DAY_MS)  # the 31st: the day is fresh
    refused = await subject.check(now + DAY_MS + 1)
    assert not refused.allowed and refused.budget is not None
    assert refused.budget.scope is BudgetScope.KEY_MONTHLY  # the daily one has 2,000 left
    assert refused.budget.reset_at == "2027-01-01T00:00:00Z"
    assert (await subject.check(at("2027-01-01T00:00:00"))).allowed


async def test_the_tightest_budget_is_reported_and_key_and_project_both_apply(
    subject: Subject,
) -> None:
    await subject.budgets(bd=10_000, bm=100_000, key_bd=3_000)
    now = at("2026-06-15T08:00:00")
    await subject.charge(2_500, now, now)
    decision = await subject.check(now + 1)
    assert decision.budget is not None and decision.budget.scope is BudgetScope.KEY_DAILY
    assert decision.budget.remaining_nanos == 500
    other_key = Subject(subject.redis)  # another key of the same project
    other_key.project = subject.project
    await other_key.charge(7_500, now, now + 2)
    refused = await other_key.check(now + 3)
    assert not refused.allowed and refused.budget is not None
    assert (
        refused.budget.scope is BudgetScope.PROJECT_DAILY and refused.budget.spent_nanos == 10_000
    )


async def test_an_event_is_charged_once_and_only_to_windows_still_open(
    subject: Subject,
) -> None:
    now = at("2026-03-31T23:59:59")
    event = uuid.uuid4()
    assert await subject.charge(700, now, now, event) == 1
    assert await subject.charge(700, now, now + 5, event) == 0  # redelivered
    assert await subject.spent(BudgetScope.PROJECT_DAILY, now) == 700
    assert await subject.spent(BudgetScope.KEY_MONTHLY, now) == 700
    # Published before midnight, charged after it: yesterday is over, the month is not.
    yesterday = at("2026-03-30T23:00:00")
    await subject.charge(50, yesterday, at("2026-03-31T00:00:01"))
    assert await subject.spent(BudgetScope.PROJECT_MONTHLY, now) == 750
    assert await subject.spent(BudgetScope.PROJECT_DAILY, now) == 700
    # Published in March, charged in April: both of its windows are over.
    april = at("2026-04-01T00:00:01")
    assert await subject.charge(80, now, april) == 0
    assert await subject.spent(BudgetScope.PROJECT_MONTHLY, april) == 0
    assert (
        await subject.charge(0, april, april) == 0 and await subject.charge(-5, april, april) == 0
    )


async def test_spend_counters_expire_when_their_window_ends(subject: Subject) -> None:
    now = at("2026-12-04T20:00:00")
    event = uuid.uuid4()
    await subject.charge(10, now, now, event)
    day_key, month_key, key_day, key_month, marker = charge_spend_keys(
        subject.project, subject.key, event
    )
    day_left, month_left = at("2026-12-05T00:00:00") - now, month_end_ms(now) - now
    for key, left in ((day_key, day_left), (key_day, day_left), (month_key, month_left),
                      (key_month, month_left), (marker, month_left)):  # fmt: skip
        assert left - 60_000 < await subject.redis.pttl(key) <= left, key
    # The next day's first charge drops the old day's field (the hash had not expired
    # yet on a clock the test controls).
    tomorrow = now + DAY_MS
    await subject.charge(20, tomorrow, tomorrow)
    assert await subject.redis.hgetall(day_key) == {day_field(tomorrow).encode(): b"20"}


async def test_a_request_the_cache_may_answer_is_admitted_with_the_refusal_attached(
    subject: Subject,
) -> None:
    await subject.budgets(bd=0, key_rpm=2)
    now = at("2026-12-04T10:00:00")
    plain = await subject.check(now)
    assert not plain.allowed and plain.budget is not None and plain.budget.refused
    cached = await subject.check(now + 1, cache_may_answer=True)
    assert cached.allowed and cached.budget is not None and cached.budget.refused
    assert cached.requests_remaining == 1  # the rate limits were decided and consumed
    assert (await subject.check(now + 2, cache_may_answer=True)).requests_remaining == 0
    over_rate = await subject.check(now + 3, cache_may_answer=True)
    assert not over_rate.allowed and over_rate.budget is not None and over_rate.budget.refused


async def test_no_budget_no_budget_fields_and_old_callers_are_unaffected(
    subject: Subject,
) -> None:
    now = at("2026-12-04T10:00:00")
    await subject.charge(10**12, now, now)
    assert (await subject.check(now)).budget is None
    await subject.budgets(bd=5)
    keys = check_keys(subject.project, subject.key)[:10]  # a version 7 gateway's call
    reply = await subject.redis.fcall(CHECK_FUNCTION, len(keys), *keys, str(subject.key),
                                      10**9, "old", now)  # fmt: skip
    assert LimitDecision.from_reply(reply).allowed


async def test_a_hand_edited_budget_field_is_read_or_ignored_never_an_error(
    subject: Subject,
) -> None:
    now = at("2026-12-04T10:00:00")
    await subject.charge(8, now, now)
    await subject.redis.hset(limits_key(subject.project), mapping={"bd": "007", "bm": "lots"})
    decision = await subject.check(now)
    assert not decision.allowed and decision.budget is not None
    assert (decision.budget.scope, decision.budget.limit_nanos) == (BudgetScope.PROJECT_DAILY, 7)
