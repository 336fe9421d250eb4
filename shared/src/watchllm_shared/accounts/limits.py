"""Rate and concurrency limits in Postgres: project overrides, per-key overrides, and
the snapshot the limiter service copies into Redis.

``concurrency`` is how many requests may be in flight at once (project: all its keys
together; absent, the gateways' default per-project limit applies).

Every change notifies ``LIMITS_CHANGED_CHANNEL`` in its transaction, so limiter
replicas resync the project as soon as the change commits (and a periodic full sync
catches anything missed while a replica was disconnected).
"""

from __future__ import annotations

import uuid

import asyncpg

from watchllm_shared.accounts.audit import audit, notify_limits_changed
from watchllm_shared.accounts.errors import InvalidInputError, NotFoundError
from watchllm_shared.accounts.models import Budgets, ProjectLimits

# "Keep the current value" for an optional limit; None clears it.
KEEP = -1


def _validated(name: str, value: int | None) -> int | None:
    if value is not None and value != KEEP and value < 1:
        raise InvalidInputError(f"{name} must be a positive integer (or cleared)")
    return value


def _changed(**limits: int | None) -> dict[str, int | None]:
    """The audit details of a limits change: what was set (None: removed), not what was
    kept."""
    return {name: value for name, value in limits.items() if value != KEEP}


class LimitStore:
    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    async def set_project_limits(
        self, project_name: str, rpm: int | None = KEEP, tpm: int | None = KEEP,
        concurrency: int | None = KEEP,
    ) -> ProjectLimits:  # fmt: skip
        rpm, tpm = _validated("rpm", rpm), _validated("tpm", tpm)
        concurrency = _validated("concurrency", concurrency)
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval(
                "UPDATE project_settings s SET"
                " rpm_limit = CASE WHEN $2::int = -1 THEN s.rpm_limit ELSE $2 END,"
                " tpm_limit = CASE WHEN $3::int = -1 THEN s.tpm_limit ELSE $3 END,"
                " concurrency_limit = CASE WHEN $4::int = -1 THEN s.concurrency_limit"
                " ELSE $4 END,"
                " updated_at = now()"
                " FROM projects p WHERE p.id = s.project_id AND p.name = $1 RETURNING p.id",
                project_name, rpm, tpm, concurrency,
            )  # fmt: skip
            if project_id is None:
                raise NotFoundError(f"no project named {project_name!r}")
            await audit(conn, self._actor, "project.limits", project_id, None,
                        _changed(rpm=rpm, tpm=tpm, concurrency=concurrency))  # fmt: skip
            await notify_limits_changed(conn, project_id)
        return await self.project_limits(project_id)

    async def set_key_limits(
        self, key_id: uuid.UUID, rpm: int | None = KEEP, tpm: int | None = KEEP,
        concurrency: int | None = KEEP,
    ) -> ProjectLimits:  # fmt: skip
        rpm, tpm = _validated("rpm", rpm), _validated("tpm", tpm)
        concurrency = _validated("concurrency", concurrency)
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval(
                "UPDATE api_keys SET"
                " rpm_limit = CASE WHEN $2::int = -1 THEN rpm_limit ELSE $2 END,"
                " tpm_limit = CASE WHEN $3::int = -1 THEN tpm_limit ELSE $3 END,"
                " concurrency_limit = CASE WHEN $4::int = -1 THEN concurrency_limit ELSE $4 END"
                " WHERE id = $1 RETURNING project_id",
                key_id, rpm, tpm, concurrency,
            )  # fmt: skip
            if project_id is None:
                raise NotFoundError(f"no key with id {key_id}")
            await audit(conn, self._actor, "key.limits", project_id, key_id,
                        _changed(rpm=rpm, tpm=tpm, concurrency=concurrency))  # fmt: skip
            await notify_limits_changed(conn, project_id)
        return await self.project_limits(project_id)

    async def project_limits(self, project_id: uuid.UUID) -> ProjectLimits:
        row = await self._pool.fetchrow(
            "SELECT pl.requests_per_day, s.rpm_limit, s.tpm_limit, s.concurrency_limit,"
            " s.daily_budget_usd, s.monthly_budget_usd FROM projects p"
            " JOIN plans pl ON pl.name = p.plan"
            " LEFT JOIN project_settings s ON s.project_id = p.id WHERE p.id = $1",
            project_id,
        )
        if row is None:
            raise NotFoundError(f"no project with id {project_id}")
        keys = await self._pool.fetch(
            "SELECT id, rpm_limit, tpm_limit, concurrency_limit, daily_budget_usd,"
            " monthly_budget_usd FROM api_keys"
            " WHERE project_id = $1 AND revoked_at IS NULL AND (rpm_limit IS NOT NULL"
            " OR tpm_limit IS NOT NULL OR concurrency_limit IS NOT NULL"
            " OR daily_budget_usd IS NOT NULL OR monthly_budget_usd IS NOT NULL)",
            project_id,
        )
        return ProjectLimits(
            project_id=project_id,
            requests_per_day=row["requests_per_day"],
            rpm=row["rpm_limit"],
            tpm=row["tpm_limit"],
            key_limits={
                k["id"]: (k["rpm_limit"], k["tpm_limit"])
                for k in keys
                if k["rpm_limit"] is not None or k["tpm_limit"] is not None
            },
            concurrency=row["concurrency_limit"],
            key_concurrency={
                k["id"]: k["concurrency_limit"] for k in keys if k["concurrency_limit"] is not None
            },
            budgets=Budgets(row["daily_budget_usd"], row["monthly_budget_usd"]),
            key_budgets={
                k["id"]: Budgets(k["daily_budget_usd"], k["monthly_budget_usd"])
                for k in keys
                if k["daily_budget_usd"] is not None or k["monthly_budget_usd"] is not None
            },
        )

    async def project_ids(self) -> list[uuid.UUID]:
        rows = await self._pool.fetch("SELECT id FROM projects ORDER BY id")
        return [r["id"] for r in rows]
