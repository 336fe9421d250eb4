"""Helpers every change in the accounts module runs inside its own transaction."""

from __future__ import annotations

import uuid
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
