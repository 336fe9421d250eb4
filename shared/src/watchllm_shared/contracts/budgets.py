"""Budgets in USD (issue 16): the contract between the accounts module (budgets in
Postgres), the limiter service (copies them into the limits hash, charges spend from
the request-completed events), the limiter library (decides in ``watchllm_limit_check``)
and whoever reads spend (the gateway's headers; the dashboard and alerts).

Amounts in Redis are whole **nano-dollars** (10^-9 USD), so sums are exact integers:
the built-in prices (USD per million tokens, at most three decimals) cost a whole
number of nano-dollars per token. A cost finer than that (an operator's price such as
0.0375) is rounded *up* to the next nano-dollar per request: spend is never under-counted.

Windows are calendar UTC days and months on Redis's clock (the library's ``TIME``):
day field ``days since 1970-01-01``, month field ``months since 1970-01``
(``day_field``/``month_field``). Spend lives in four hashes per key (``spend_keys``):
the project's day and month, the key's day and month; each holds the current window's
field (older fields are dropped on a window's first charge) and expires when its
window ends, so a quiet project keeps nothing. Budgets are limits hash fields
(``contracts.limits``): ``bd``/``bm`` (project daily/monthly), ``k:<key id>:bd``/
``k:<key id>:bm`` (a key's), in nano-dollars; an absent field means no budget.

Every charge is idempotent per event: the first one sets ``spend_marker_key`` (kept
until the event's month ends while the event is unacknowledged, so a redelivery after
any outage charges nothing; shortened to ``ACKED_MARKER_MS`` once acknowledged, which
still covers a gateway re-sending a batch whose first write it could not confirm).
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from enum import IntEnum
from uuid import UUID

import redis.asyncio as aioredis

from watchllm_shared.redis_io import redis_now_ms

NANOS_PER_USD = 10**9
# The largest budget (per window): far below what a Redis integer holds, with room for
# any month's overshoot. The smallest step is one nano-dollar.
MAX_BUDGET_USD = Decimal(10**9)
# A larger cost in one event is a bug or a forged event: it is parked, never charged.
MAX_COST_PER_EVENT_USD = Decimal(10**6)
# How long an acknowledged event's marker stays: a gateway re-sends a batch whose write
# it could not confirm within its retry backoff (≤ 2 s) once Redis answers again.
ACKED_MARKER_MS = 600_000
SPEND_FUNCTION = "watchllm_spend_charge"

DAY_MS = 86_400_000


class BudgetScope(IntEnum):
    """Which budget an answer names (the library's reply says it by number)."""

    PROJECT_DAILY = 1
    PROJECT_MONTHLY = 2
    KEY_DAILY = 3
    KEY_MONTHLY = 4

    @property
    def owner(self) -> str:
        return "project" if self <= BudgetScope.PROJECT_MONTHLY else "key"

    @property
    def period(self) -> str:
        return "daily" if self % 2 == 1 else "monthly"


def budget_error(amount: Decimal) -> str | None:
    """Why ``amount`` cannot be a budget, or None when it can."""
    if not amount.is_finite():
        return f"{amount} is not a number of USD"
    if amount < 0:
        return f"a budget cannot be negative ({amount} USD)"
    if amount > MAX_BUDGET_USD:
        return f"a budget is at most {MAX_BUDGET_USD:,} USD per window ({amount} USD)"
    if amount != amount.quantize(Decimal("1e-9"), rounding=ROUND_CEILING):
        return f"a budget has at most 9 decimal places (nano-dollars): {amount}"
    return None


def parse_usd(text: str) -> Decimal:
    """A USD amount as typed by an operator; ValueError with the reason otherwise."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not an amount of USD") from exc
    if (error := budget_error(amount)) is not None:
        raise ValueError(error)
    return amount


def usd_to_nanos(amount: Decimal) -> int:
    """Whole nano-dollars, rounded up."""
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def format_usd(nanos: int) -> str:
    """``5``, ``0.00012``: exact, without trailing zeros (integer arithmetic: it runs
    for every answer of a project with a budget)."""
    whole, fraction = divmod(nanos, NANOS_PER_USD)
    return f"{whole}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else str(whole)


@functools.lru_cache(maxsize=64)
def utc_timestamp(ms: int) -> str:
    """``2026-12-05T00:00:00Z`` (a window's end: a handful of distinct values a day)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_field(ms: int) -> str:
    return str(ms // DAY_MS)


def month_field(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return str((at.year - 1970) * 12 + at.month - 1)


def month_end_ms(ms: int) -> int:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    days = calendar.monthrange(at.year, at.month)[1]
    return (ms // DAY_MS - at.day + 1 + days) * DAY_MS


def _prefix(project_id: UUID, key_id: UUID | None) -> str:
    p = f"watchllm:limit:{{{project_id}}}"
    return p if key_id is None else f"{p}:k:{key_id}"


def spend_keys(project_id: UUID, key_id: UUID) -> list[str]:
    """The spend hashes, in the library's order: project day, project month, key day,
    key month (``BudgetScope`` minus one)."""
    p, k = _prefix(project_id, None), _prefix(project_id, key_id)
    return [f"{p}:spend:day", f"{p}:spend:month", f"{k}:spend:day", f"{k}:spend:month"]


def spend_marker_key(project_id: UUID, event_id: UUID) -> str:
    return f"{_prefix(project_id, None)}:spend:ev:{event_id}"


async def spend_now(
    redis: aioredis.Redis, project_id: UUID, key_id: UUID | None = None
) -> tuple[int, int]:
    """Nano-dollars spent today and this month (calendar UTC, Redis's clock, as the
    library decides) by the project, or by one of its keys: what a dashboard or an alert
    compares with the budgets (``ProjectLimits.budgets``/``key_budgets``)."""
    now = await redis_now_ms(redis)
    keys = spend_keys(project_id, key_id or project_id)
    day_key, month_key = (keys[0], keys[1]) if key_id is None else (keys[2], keys[3])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(day_key, day_field(now))
        pipe.hget(month_key, month_field(now))
        day, month = await pipe.execute()
    return int(day or 0), int(month or 0)


def charge_spend_keys(project_id: UUID, key_id: UUID, event_id: UUID) -> list[str]:
    """KEYS of ``watchllm_spend_charge``: the spend hashes, then the event's marker."""
    return [*spend_keys(project_id, key_id), spend_marker_key(project_id, event_id)]


@dataclass(frozen=True, slots=True)
class BudgetState:
    """The tightest budget of one answer (``LimitDecision``): the one that refused, else
    the one with the least left."""

    scope: BudgetScope
    limit_nanos: int
    spent_nanos: int
    reset_at_ms: int  # when the window ends (00:00 UTC, or the first of the month)
    reset_in_ms: int
    refused: bool

    @property
    def remaining_nanos(self) -> int:
        return max(0, self.limit_nanos - self.spent_nanos)

    @property
    def reset_at(self) -> str:
        return utc_timestamp(self.reset_at_ms)
