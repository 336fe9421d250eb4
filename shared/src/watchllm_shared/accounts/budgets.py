"""Budgets in USD per project and per key, per calendar UTC day and/or month (issue 16),
in Postgres; the limiter copies them into Redis with the limits and enforces them
(``watchllm_shared.contracts.budgets`` says how).

A budget is an amount of USD from 0 (nothing but cache hits) to 10^9, with at most nine
decimal places; None removes it. Every change is audited and notifies
``LIMITS_CHANGED_CHANNEL`` in its transaction, like a limit change: limiter replicas
resync the project as soon as it commits. A budget set during a window counts that
window's spend so far: the limiter charges every request's cost, budget or not.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from watchllm_shared.accounts.audit import audit, notify_limits_changed
from watchllm_shared.accounts.errors import InvalidInputError, NotFoundError
from watchllm_shared.accounts.models import Budgets
from watchllm_shared.contracts.budgets import budget_error

# $2/$4: whether to change the daily/monthly budget, $3/$5: to what.
_SETS = (
    " SET daily_budget_usd = CASE WHEN $2 THEN $3::numeric ELSE daily_budget_usd END,"
    " monthly_budget_usd = CASE WHEN $4 THEN $5::numeric ELSE monthly_budget_usd END"
)
_RETURNING = " RETURNING daily_budget_usd, monthly_budget_usd"
_SET_PROJECT = "UPDATE project_settings" + _SETS + " WHERE project_id = $1" + _RETURNING
_SET_KEY = "UPDATE api_keys" + _SETS + " WHERE id = $1" + _RETURNING


class Keep:
    """ "Keep the current budget" (an option left out); None removes it."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = Keep()


def _validated(name: str, value: Decimal | None | Keep) -> Decimal | None | Keep:
    if isinstance(value, Decimal) and (error := budget_error(value)) is not None:
        raise InvalidInputError(f"{name}: {error}")
    return value


def _changes(daily: Decimal | None | Keep, monthly: Decimal | None | Keep) -> dict[str, Any]:
    """SET clauses' values and the audit details: what was set (None: removed)."""
    changes = {"daily_budget_usd": daily, "monthly_budget_usd": monthly}
    return {column: value for column, value in changes.items() if not isinstance(value, Keep)}


class BudgetStore:
    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    async def set_project_budgets(
        self, project_name: str, daily_usd: Decimal | None | Keep = KEEP,
        monthly_usd: Decimal | None | Keep = KEEP,
    ) -> Budgets:  # fmt: skip
        changes = _changes(_validated("daily budget", daily_usd),
                           _validated("monthly budget", monthly_usd))  # fmt: skip
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval("SELECT id FROM projects WHERE name = $1",
                                             project_name)  # fmt: skip
            if project_id is None:
                raise NotFoundError(f"no project named {project_name!r}")
            row = await self._update(conn, _SET_PROJECT, project_id, changes)
            await self._record(conn, "project.budget", project_id, None, changes)
        return Budgets(row["daily_budget_usd"], row["monthly_budget_usd"])

    async def set_key_budgets(
        self, key_id: uuid.UUID, daily_usd: Decimal | None | Keep = KEEP,
        monthly_usd: Decimal | None | Keep = KEEP,
    ) -> Budgets:  # fmt: skip
        changes = _changes(_validated("daily budget", daily_usd),
                           _validated("monthly budget", monthly_usd))  # fmt: skip
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval("SELECT project_id FROM api_keys WHERE id = $1",
                                             key_id)  # fmt: skip
            if project_id is None:
                raise NotFoundError(f"no key with id {key_id}")
            row = await self._update(conn, _SET_KEY, key_id, changes)
            await self._record(conn, "key.budget", project_id, key_id, changes)
        return Budgets(row["daily_budget_usd"], row["monthly_budget_usd"])

    async def _update(self, conn: Any, sql: str, row_id: uuid.UUID,
                      changes: dict[str, Any]) -> Any:  # fmt: skip
        """Set the changed columns (none: just read them) and return both."""
        daily, monthly = "daily_budget_usd", "monthly_budget_usd"
        return await conn.fetchrow(sql, row_id, daily in changes, changes.get(daily),
                                   monthly in changes, changes.get(monthly))  # fmt: skip

    async def _record(
        self, conn: Any, action: str, project_id: uuid.UUID, key_id: uuid.UUID | None,
        changes: dict[str, Any],
    ) -> None:  # fmt: skip
        if not changes:
            return  # a look, not a change
        details = {c: None if v is None else f"{v.normalize():f}" for c, v in changes.items()}
        await audit(conn, self._actor, action, project_id, key_id, details)
        await notify_limits_changed(conn, project_id)
