"""Spend against budget, per project and per key, read from the limiter's spend hashes
without changing them (issue 16; keys, units and windows in
``watchllm_shared.contracts.budgets``).

Windows are calendar UTC days and months. They are read at the moment the page is
given (the runtime's clock, which tests pin), not at Redis's ``TIME`` as the library
charges: the page's "now" then decides the window, its elapsed part (the rate) and its
reset together. The two clocks agree where hosts keep time (NTP); a dashboard a few
seconds off shows a new window's spend that much late, around 00:00 UTC only.

The rate is this window's spend over its elapsed part; the time left is what remains
of the budget at that rate. A window holds only its own field (the library drops older
ones on a window's first charge, and each hash expires when its window ends), so a
window without charges reads 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import redis.asyncio as aioredis

from watchllm_shared.contracts.budgets import (
    DAY_MS,
    day_field,
    month_end_ms,
    month_field,
    spend_keys,
    usd_to_nanos,
)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who spends: the project (``key_id`` None) or one of its keys, with its budgets."""

    label: str
    key_id: UUID | None
    daily_usd: Decimal | None
    monthly_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class Spend:
    """One window's spend of the project or of a key, against its budget (if any)."""

    owner: str
    period: str  # "daily" or "monthly"
    spent_nanos: int
    budget_nanos: int | None  # None: no budget
    start_ms: int
    end_ms: int  # when it resets
    now_ms: int

    @property
    def remaining_nanos(self) -> int | None:
        if self.budget_nanos is None:
            return None
        return max(0, self.budget_nanos - self.spent_nanos)

    @property
    def over(self) -> bool:
        """Spent: the budget refuses requests (a budget of 0 serves only cache hits)."""
        return self.budget_nanos is not None and self.spent_nanos >= self.budget_nanos

    @property
    def resets_in_seconds(self) -> float:
        return (self.end_ms - self.now_ms) / 1000

    @property
    def seconds_left(self) -> float | None:
        """How long the rest of the budget lasts at this window's rate so far; None when
        there is no budget, no spend yet, or it is spent."""
        remaining, elapsed = self.remaining_nanos, self.now_ms - self.start_ms
        if remaining is None or self.over or self.spent_nanos == 0 or elapsed <= 0:
            return None
        return remaining * elapsed / self.spent_nanos / 1000


def month_start_ms(ms: int) -> int:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return (ms // DAY_MS - at.day + 1) * DAY_MS


async def budget_spend(
    redis: aioredis.Redis, project_id: UUID, owners: list[Owner], now: datetime
) -> list[Spend]:
    """Today's and this month's spend of each owner at ``now``, in one round trip."""
    now_ms = int(now.timestamp() * 1000)
    day, month = day_field(now_ms), month_field(now_ms)
    async with redis.pipeline(transaction=False) as pipe:
        for owner in owners:
            keys = spend_keys(project_id, owner.key_id or project_id)
            day_key, month_key = keys[:2] if owner.key_id is None else keys[2:]
            pipe.hget(day_key, day)
            pipe.hget(month_key, month)
        replies = iter(await pipe.execute())
    day_start = now_ms // DAY_MS * DAY_MS
    windows = (
        ("daily", day_start, day_start + DAY_MS),
        ("monthly", month_start_ms(now_ms), month_end_ms(now_ms)),
    )
    spends = []
    for owner in owners:
        for (period, start, end), budget in zip(
            windows, (owner.daily_usd, owner.monthly_usd), strict=True
        ):
            spent = int(next(replies) or 0)
            nanos = None if budget is None else usd_to_nanos(budget)
            spends.append(Spend(owner.label, period, spent, nanos, start, end, now_ms))
    return spends
