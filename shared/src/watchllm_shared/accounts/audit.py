"""Helpers every change in the accounts module runs inside its own transaction, and the
read side of the audit log (who changed what, when)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from watchllm_shared.contracts.limits import LIMITS_CHANGED_CHANNEL


async def audit(
    conn: Any,
    actor: str,
    action: str,
    project_id: uuid.UUID | None,
    key_id: uuid.UUID | None,
    details: dict[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, action, project_id, key_id, details)"
        " VALUES ($1, $2, $3, $4, $5::jsonb)",
        actor, action, project_id, key_id, orjson.dumps(details).decode(),
    )  # fmt: skip


async def notify_limits_changed(conn: Any, project_id: uuid.UUID) -> None:
    """Tell limiter replicas to resync this project; delivered only if the change commits."""
    await conn.execute("SELECT pg_notify($1, $2)", LIMITS_CHANGED_CHANNEL, str(project_id))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    project_id: uuid.UUID | None
    key_id: uuid.UUID | None
    details: dict[str, Any]


async def recent_audit(
    pool: Any, limit: int = 100, project_id: uuid.UUID | None = None
) -> list[AuditEntry]:
    """The newest audit entries (of one project, when given), newest first."""
    rows = await pool.fetch(
        "SELECT at, actor, action, project_id, key_id, details FROM audit_log"
        " WHERE $2::uuid IS NULL OR project_id = $2 ORDER BY at DESC, id DESC LIMIT $1",
        limit, project_id,
    )  # fmt: skip
    return [
        AuditEntry(
            at=r["at"],
            actor=r["actor"],
            action=r["action"],
            project_id=r["project_id"],
            key_id=r["key_id"],
            details=orjson.loads(r["details"]),
        )
        for r in rows
    ]
