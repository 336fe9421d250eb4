"""The one module that changes projects and keys in Postgres.

The CLI and the dashboard change accounts only through ``AccountStore``; the gateway
reads grants through ``find_grant``. Every change writes an audit row in the same
transaction, so the audit log cannot miss a change nor record one that rolled back.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from watchllm_shared.accounts.audit import audit, notify_limits_changed
from watchllm_shared.accounts.body_logging import body_logging_of
from watchllm_shared.accounts.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from watchllm_shared.accounts.keys import display_prefix, generate_key, hash_key
from watchllm_shared.accounts.models import (
    DEFAULT_ROTATION_GRACE_SECONDS,
    MAX_ROTATION_GRACE_SECONDS,
    ApiKey,
    Budgets,
    CacheSettings,
    CreatedKey,
    KeyGrant,
    Plan,
    Project,
)

DEFAULT_ORGANISATION = "default"

_SELECT_KEYS = """
    SELECT k.id, k.project_id, p.name AS project_name, k.name, k.display_prefix, k.created_at,
           k.revoked_at, k.expires_at, k.rpm_limit, k.tpm_limit, k.daily_budget_usd,
           k.monthly_budget_usd
    FROM api_keys k JOIN projects p ON p.id = k.project_id
"""


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(**dict(row))


_SELECT_PROJECTS = """
    SELECT p.id, p.name, p.plan, p.created_at, s.daily_budget_usd, s.monthly_budget_usd
    FROM projects p LEFT JOIN project_settings s ON s.project_id = p.id
"""


def _project(row: asyncpg.Record) -> Project:
    budgets = (
        Budgets(row["daily_budget_usd"], row["monthly_budget_usd"])
        if "daily_budget_usd" in row
        else Budgets()  # a new project: none yet
    )
    return Project(id=row["id"], name=row["name"], plan=Plan(row["plan"]),
                   created_at=row["created_at"], budgets=budgets)  # fmt: skip


class AccountStore:
    """Projects and keys. ``actor`` names who made a change, for the audit log."""

    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    @property
    def actor(self) -> str:
        return self._actor

    # -- projects -----------------------------------------------------------------

    async def create_project(self, name: str, plan: Plan = Plan.FREE) -> Project:
        async with self._pool.acquire() as conn, conn.transaction():
            org_id = await conn.fetchval(
                "INSERT INTO organisations (id, name) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                uuid.uuid4(),
                DEFAULT_ORGANISATION,
            )
            try:
                row = await conn.fetchrow(
                    "INSERT INTO projects (id, organisation_id, name, plan)"
                    " VALUES ($1, $2, $3, $4) RETURNING id, name, plan, created_at",
                    uuid.uuid4(),
                    org_id,
                    name,
                    plan.value,
                )
            except asyncpg.UniqueViolationError as exc:
                raise AlreadyExistsError(f"project {name!r} already exists") from exc
            except asyncpg.CheckViolationError as exc:
                raise InvalidInputError(
                    f"invalid project name {name!r}: use letters, digits, '_', '.', '-'"
                    " (at most 63 characters, starting with a letter or digit)"
                ) from exc
            assert row is not None
            await conn.execute("INSERT INTO project_settings (project_id) VALUES ($1)", row["id"])
            await audit(conn, self._actor, "project.create", row["id"], None, {"plan": plan.value})
            await notify_limits_changed(conn, row["id"])
            return _project(row)

    async def get_project(self, name: str) -> Project:
        row = await self._pool.fetchrow(_SELECT_PROJECTS + " WHERE p.name = $1", name)
        if row is None:
            raise NotFoundError(f"no project named {name!r}")
        return _project(row)

    async def list_projects(self) -> list[Project]:
        rows = await self._pool.fetch(_SELECT_PROJECTS + " ORDER BY p.name")
        return [_project(r) for r in rows]

    async def set_plan(self, name: str, plan: Plan) -> Project:
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval(
                "UPDATE projects SET plan = $2 WHERE name = $1 RETURNING id", name, plan.value
            )
            if project_id is None:
                raise NotFoundError(f"no project named {name!r}")
            await audit(
                conn, self._actor, "project.set_plan", project_id, None, {"plan": plan.value}
            )
            await notify_limits_changed(conn, project_id)
            return _project(await conn.fetchrow(_SELECT_PROJECTS + " WHERE p.id = $1", project_id))

    # -- keys ---------------------------------------------------------------------

    async def create_key(self, project_name: str, name: str | None = None) -> CreatedKey:
        project = await self.get_project(project_name)
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._insert_key(conn, project.id, name)

    async def _insert_key(self, conn: Any, project_id: uuid.UUID, name: str | None) -> CreatedKey:
        secret = generate_key()
        key_id = await conn.fetchval(
            "INSERT INTO api_keys (id, project_id, name, key_hash, display_prefix)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            uuid.uuid4(),
            project_id,
            name,
            hash_key(secret),
            display_prefix(secret),
        )
        await audit(conn, self._actor, "key.create", project_id, key_id, {"name": name})
        row = await conn.fetchrow(
            _SELECT_KEYS + " WHERE k.id = $1",
            key_id,
        )
        return CreatedKey(key=_key(row), secret=secret)

    async def list_keys(self, project_name: str | None = None) -> list[ApiKey]:
        rows = await self._pool.fetch(
            _SELECT_KEYS + " WHERE $1::text IS NULL OR p.name = $1 ORDER BY p.name, k.created_at",
            project_name,
        )
        return [_key(r) for r in rows]

    async def get_keys(self, key_ids: Collection[uuid.UUID]) -> list[ApiKey]:
        """The keys with these ids that exist (any project, any state)."""
        rows = await self._pool.fetch(_SELECT_KEYS + " WHERE k.id = ANY($1::uuid[])", list(key_ids))
        return [_key(r) for r in rows]

    async def get_key(self, key_id: uuid.UUID) -> ApiKey:
        row = await self._pool.fetchrow(
            _SELECT_KEYS + " WHERE k.id = $1",
            key_id,
        )
        if row is None:
            raise NotFoundError(f"no key with id {key_id}")
        return _key(row)

    async def revoke_key(self, key_id: uuid.UUID) -> ApiKey:
        """Revoke now. Revoking a revoked key is a no-op that keeps the first time."""
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = await conn.fetchval(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
                " WHERE id = $1 RETURNING project_id",
                key_id,
            )
            if project_id is None:
                raise NotFoundError(f"no key with id {key_id}")
            await audit(conn, self._actor, "key.revoke", project_id, key_id, {})
            await notify_limits_changed(conn, project_id)
        return await self.get_key(key_id)

    async def rotate_key(
        self, key_id: uuid.UUID, grace_seconds: int = DEFAULT_ROTATION_GRACE_SECONDS
    ) -> CreatedKey:
        """A new key for the same project; the old one stops working after the grace.

        A key is rotated once: rotating it again would move its ``expires_at`` and bring
        a key that had already stopped back to life (or stretch a grace period) while
        issuing a second successor. Its successor is the key to rotate.
        """
        if not 0 <= grace_seconds <= MAX_ROTATION_GRACE_SECONDS:
            raise InvalidInputError(
                f"grace must be between 0 and {MAX_ROTATION_GRACE_SECONDS} seconds (30 days)"
            )
        async with self._pool.acquire() as conn, conn.transaction():
            old = await conn.fetchrow(
                "SELECT project_id, name, revoked_at, replaced_by, expires_at, rpm_limit,"
                " tpm_limit, concurrency_limit, daily_budget_usd, monthly_budget_usd"
                " FROM api_keys WHERE id = $1 FOR UPDATE",
                key_id,
            )
            if old is None:
                raise NotFoundError(f"no key with id {key_id}")
            if old["revoked_at"] is not None:
                raise InvalidInputError(f"key {key_id} is revoked; create a new key instead")
            if old["replaced_by"] is not None or old["expires_at"] is not None:
                raise InvalidInputError(
                    f"key {key_id} was already rotated (replaced by {old['replaced_by']});"
                    " rotate its replacement instead"
                )
            created = await self._insert_key(conn, old["project_id"], old["name"])
            await conn.execute(  # its successor starts at no spend (spend is per key id)
                "UPDATE api_keys SET rpm_limit = $2, tpm_limit = $3, concurrency_limit = $4,"
                " daily_budget_usd = $5, monthly_budget_usd = $6 WHERE id = $1",
                created.key.id,
                old["rpm_limit"],
                old["tpm_limit"],
                old["concurrency_limit"],
                old["daily_budget_usd"],
                old["monthly_budget_usd"],
            )
            until = datetime.now(UTC) + timedelta(seconds=grace_seconds)
            await conn.execute(
                "UPDATE api_keys SET replaced_by = $2, expires_at = $3,"
                " revoked_at = CASE WHEN $4 THEN now() ELSE NULL END WHERE id = $1",
                key_id,
                created.key.id,
                until,
                grace_seconds == 0,
            )
            await audit(
                conn,
                self._actor,
                "key.rotate",
                old["project_id"],
                key_id,
                {"replaced_by": str(created.key.id), "grace_seconds": grace_seconds},
            )
            await notify_limits_changed(conn, old["project_id"])
            return created

    # -- the gateway's read path --------------------------------------------------

    async def find_grant(self, key_hash: bytes) -> KeyGrant | None:
        row = await self._pool.fetchrow(
            "SELECT k.id, k.project_id, p.name, p.plan, s.allowed_models, pl.requests_per_day,"
            " s.cache_enabled, s.cache_mode, s.cache_similarity_threshold, s.cache_ttl_seconds,"
            " s.body_logging, s.body_retention_days, s.body_redactions,"
            " (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())) AS active"
            " FROM api_keys k JOIN projects p ON p.id = k.project_id"
            " JOIN plans pl ON pl.name = p.plan"
            " LEFT JOIN project_settings s ON s.project_id = p.id WHERE k.key_hash = $1",
            key_hash,
        )
        if row is None:
            return None
        allowed = row["allowed_models"]
        return KeyGrant(
            key_id=row["id"],
            project_id=row["project_id"],
            project_name=row["name"],
            plan=Plan(row["plan"]),
            active=row["active"],
            allowed_models=tuple(allowed) if allowed is not None else None,
            requests_per_day=row["requests_per_day"],
            cache=CacheSettings(
                enabled=row["cache_enabled"] if row["cache_enabled"] is not None else True,
                mode=row["cache_mode"] or "semantic",
                similarity_threshold=row["cache_similarity_threshold"],
                ttl_seconds=row["cache_ttl_seconds"] or 86_400,
            ),
            bodies=body_logging_of(row),
        )

    async def set_cache_settings(
        self,
        project_name: str,
        enabled: bool | None = None,
        mode: str | None = None,
        threshold: float | None = None,
        ttl_seconds: int | None = None,
    ) -> CacheSettings:
        """Change the given fields (None keeps a field); gateways see it within 0.5 s."""
        if mode is not None and mode not in ("exact", "semantic"):
            raise InvalidInputError("cache mode must be 'exact' or 'semantic'")
        if threshold is not None and not 0 < threshold <= 1:
            raise InvalidInputError("threshold must be in (0, 1]")
        if ttl_seconds is not None and ttl_seconds < 1:
            raise InvalidInputError("TTL must be at least one second")
        project = await self.get_project(project_name)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE project_settings SET cache_enabled = coalesce($2, cache_enabled),"
                " cache_mode = coalesce($3, cache_mode),"
                " cache_similarity_threshold = coalesce($4, cache_similarity_threshold),"
                " cache_ttl_seconds = coalesce($5, cache_ttl_seconds), updated_at = now()"
                " WHERE project_id = $1 RETURNING cache_enabled, cache_mode,"
                " cache_similarity_threshold, cache_ttl_seconds",
                project.id, enabled, mode, threshold, ttl_seconds,
            )  # fmt: skip
            await audit(conn, self._actor, "project.cache_settings", project.id, None,
                        {"enabled": enabled, "mode": mode, "threshold": threshold,
                         "ttl_seconds": ttl_seconds})  # fmt: skip
        return CacheSettings(
            row["cache_enabled"],
            row["cache_mode"],
            row["cache_similarity_threshold"],
            row["cache_ttl_seconds"],
        )

    async def get_cache_settings(self, project_name: str) -> CacheSettings:
        row = await self._pool.fetchrow(
            "SELECT s.cache_enabled, s.cache_mode, s.cache_similarity_threshold,"
            " s.cache_ttl_seconds FROM projects p"
            " JOIN project_settings s ON s.project_id = p.id WHERE p.name = $1",
            project_name,
        )
        if row is None:
            raise NotFoundError(f"no project named {project_name!r}")
        return CacheSettings(
            row["cache_enabled"],
            row["cache_mode"],
            row["cache_similarity_threshold"],
            row["cache_ttl_seconds"],
        )

    async def get_allowed_models(self, project_name: str) -> list[str] | None:
        """The project's model patterns, or None when every model is allowed."""
        project = await self.get_project(project_name)
        allowed = await self._pool.fetchval(
            "SELECT allowed_models FROM project_settings WHERE project_id = $1", project.id
        )
        return list(allowed) if allowed is not None else None

    async def set_allowed_models(self, project_name: str, patterns: list[str] | None) -> None:
        project = await self.get_project(project_name)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE project_settings SET allowed_models = $2, updated_at = now()"
                " WHERE project_id = $1",
                project.id,
                patterns,
            )
            await audit(
                conn,
                self._actor,
                "project.allowed_models",
                project.id,
                None,
                {"allowed_models": patterns},
            )
