"""Budget thresholds: right after a batch's spend is charged (and before its events are
acknowledged), each project and key it charged that a ``budget`` rule watches has its
spend compared with its budgets; every threshold reached (``spent ≥ threshold % of the
budget``) is raised once per rule, budget and window (``queue.raise_once``; the key
expires a day after the window ends). A charge that jumps from 40 % to 100 % raises 50,
80 and 100 at once.

What it reads is what the library decides on: the budgets in the limits hash (``bd``,
``bm``, ``k:<key id>:bd|bm``, nano-dollars) and the spend hashes' current fields, on
Redis's clock (``contracts.budgets``). A budget of 0 raises nothing (only cache hits are
allowed; there is nothing to spend). Projects no rule watches cost no Redis call.

A crash between charging and acknowledging re-reads the events: charges are idempotent
and the dedupe keys make the alerts so too.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from watchllm_limiter.alerts.queue import alert_for, raise_once
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_shared.accounts.alerts import AlertRule
from watchllm_shared.contracts import RequestCompleted
from watchllm_shared.contracts.alerts import Alert, AlertKind, dedupe_key
from watchllm_shared.contracts.budgets import (
    DAY_MS,
    BudgetScope,
    day_field,
    format_usd,
    month_end_ms,
    month_field,
    spend_keys,
    utc_timestamp,
)
from watchllm_shared.contracts.limits import limits_key
from watchllm_shared.redis_io import redis_now_ms


class BudgetAlerts:
    def __init__(
        self, redis: aioredis.Redis, rules: RuleCache, stream: str,
        clock: Callable[[], Awaitable[int]] | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._rules = rules
        self._stream = stream
        # Redis's clock, as the library's windows; tests pass the library's ``now`` too.
        self._clock = clock or functools.partial(redis_now_ms, redis)

    async def after_charge(self, events: Sequence[RequestCompleted]) -> int:
        """Raise what the charged ``events`` crossed; how many alerts were queued."""
        watched: dict[uuid.UUID, set[uuid.UUID]] = {}
        for event in events:
            if event.cost_usd > 0 and event.project_id is not None and event.key_id is not None:
                if self._rules.watching(event.project_id, AlertKind.BUDGET):
                    watched.setdefault(event.project_id, set()).add(event.key_id)
        if not watched:
            return 0
        now_ms = await self._clock()
        states = await self._read(watched, now_ms)
        raised = 0
        for project_id, key_id, scope, limit, spent in states:
            for rule in self._rules.watching(project_id, AlertKind.BUDGET):
                raised += await self._raise(rule, project_id, key_id, scope, limit, spent, now_ms)
        return raised

    async def _read(
        self, watched: dict[uuid.UUID, set[uuid.UUID]], now_ms: int
    ) -> list[tuple[uuid.UUID, uuid.UUID | None, BudgetScope, int, int]]:
        """(project, key or None, scope, budget, spent) for every budget set: the budgets
        first (one HMGET per project), then the spend of those that exist only (keys
        rarely have budgets of their own)."""
        asked: list[tuple[uuid.UUID, uuid.UUID | None, BudgetScope]] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id, keys in watched.items():
                fields = []
                for key_id in (None, *sorted(keys)):
                    prefix = "" if key_id is None else f"k:{key_id}:"
                    first = BudgetScope.PROJECT_DAILY if key_id is None else BudgetScope.KEY_DAILY
                    asked += [(project_id, key_id, first), (project_id, key_id,
                                                            BudgetScope(first + 1))]  # fmt: skip
                    fields += [prefix + "bd", prefix + "bm"]
                pipe.hmget(limits_key(project_id), fields)
            limits = [value for reply in await pipe.execute() for value in reply]
        budgets = [(*a, int(v)) for a, v in zip(asked, limits, strict=True) if v and int(v) > 0]
        if not budgets:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id, key_id, scope, _ in budgets:
                spend_hash = spend_keys(project_id, key_id or project_id)[scope - 1]
                daily = scope.period == "daily"
                pipe.hget(spend_hash, day_field(now_ms) if daily else month_field(now_ms))
            spent: list[Any] = await pipe.execute()
        return [(p, k, scope, limit, int(s or 0))
                for (p, k, scope, limit), s in zip(budgets, spent, strict=True)]  # fmt: skip

    async def _raise(
        self, rule: AlertRule, project_id: uuid.UUID, key_id: uuid.UUID | None,
        scope: BudgetScope, limit: int, spent: int, now_ms: int,
    ) -> int:  # fmt: skip
        daily = scope.period == "daily"
        window = day_field(now_ms) if daily else month_field(now_ms)
        ends_ms = (now_ms // DAY_MS + 1) * DAY_MS if daily else month_end_ms(now_ms)
        raised = 0
        for threshold in rule.thresholds:
            if spent * 100 < limit * threshold:
                continue
            key = dedupe_key(self._stream, "budget", rule.id, project_id, key_id or "-",
                             scope.period, window, threshold)  # fmt: skip
            alert = self._alert(rule, project_id, key_id, scope, limit, spent, threshold, ends_ms)
            if await raise_once(self._redis, self._stream, key, ends_ms - now_ms + DAY_MS, alert):
                raised += 1
        return raised

    def _alert(
        self, rule: AlertRule, project_id: uuid.UUID, key_id: uuid.UUID | None,
        scope: BudgetScope, limit: int, spent: int, threshold: int, ends_ms: int,
    ) -> Alert:  # fmt: skip
        name = self._rules.project_name(project_id)
        owner = f"project {name}" if key_id is None else f"key {key_id} of project {name}"
        text = (f"WatchLLM: {owner} has spent {threshold} % of its {scope.period} budget "
                f"({format_usd(spent)} of {format_usd(limit)} USD); it resets at "
                f"{utc_timestamp(ends_ms)}")  # fmt: skip
        details: dict[str, str | int | float | None] = {
            "project": name, "key_id": None if key_id is None else str(key_id),
            "budget": scope.period, "threshold_percent": threshold,
            "spent_usd": format_usd(spent), "budget_usd": format_usd(limit),
            "resets_at": utc_timestamp(ends_ms),
        }  # fmt: skip
        return alert_for(rule, AlertKind.BUDGET, project_id, text, details)
