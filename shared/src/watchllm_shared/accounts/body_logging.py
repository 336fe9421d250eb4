"""Body logging per project (issue 17): whether the gateway stores a project's request
and answer bodies, for how many days, and what it redacts first.

Off by default. A change is audited in its transaction (``project.body_logging``);
gateways read it with the key grant, so it reaches every replica within the grant
cache's TTL (0.5 s). Redactions are checked before anything is written
(``contracts.request_bodies.redaction_error``): a bad regular expression is refused
with the reason and changes nothing. ``secret`` is always applied by the gateway,
whether listed or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import InvalidInputError, NotFoundError
from watchllm_shared.accounts.models import BodyLogging
from watchllm_shared.contracts.request_bodies import (
    MAX_REDACTIONS,
    MAX_RETENTION_DAYS,
    redaction_error,
)

_SET = (
    "UPDATE project_settings s SET body_logging = coalesce($2, s.body_logging),"
    " body_retention_days = coalesce($3, s.body_retention_days),"
    " body_redactions = coalesce($4, s.body_redactions), updated_at = now()"
    " FROM projects p WHERE p.id = s.project_id AND p.name = $1"
    " RETURNING s.project_id, s.body_logging, s.body_retention_days, s.body_redactions"
)


def body_logging_of(row: Mapping[str, Any]) -> BodyLogging:
    """A project's setting from a row with the ``project_settings`` columns (a project
    without a settings row logs nothing)."""
    if row["body_logging"] is None:
        return BodyLogging()
    return BodyLogging(row["body_logging"], row["body_retention_days"],
                       tuple(row["body_redactions"]))  # fmt: skip


def checked_redactions(items: Sequence[str]) -> list[str]:
    """``items`` without repeats, or ``InvalidInputError`` naming the first bad one."""
    unique = list(dict.fromkeys(items))
    if len(unique) > MAX_REDACTIONS:
        raise InvalidInputError(f"at most {MAX_REDACTIONS} redactions")
    for item in unique:
        if (error := redaction_error(item)) is not None:
            raise InvalidInputError(error)
    return unique


class BodyLoggingStore:
    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    async def set_body_logging(
        self, project_name: str, enabled: bool | None = None,
        retention_days: int | None = None, redactions: Sequence[str] | None = None,
    ) -> BodyLogging:  # fmt: skip
        """Change the given fields (None keeps one); with none given, read them."""
        if retention_days is not None and not 1 <= retention_days <= MAX_RETENTION_DAYS:
            raise InvalidInputError(f"retention must be 1 to {MAX_RETENTION_DAYS} days")
        checked = checked_redactions(redactions) if redactions is not None else None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SET, project_name, enabled, retention_days, checked)
            if row is None:
                raise NotFoundError(f"no project named {project_name!r}")
            changes = {"enabled": enabled, "retention_days": retention_days,
                       "redactions": checked}  # fmt: skip
            changes = {name: value for name, value in changes.items() if value is not None}
            if changes:
                await audit(conn, self._actor, "project.body_logging", row["project_id"], None,
                            changes)  # fmt: skip
        return body_logging_of(row)
