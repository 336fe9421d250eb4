"""Alert rules in Postgres (issue 16): a webhook, the project it watches (None: every
project), the kinds of alert it gets and the rules' options. The limiter reads them
(``watchllm_limiter.alerts``) and delivers; the CLI and the dashboard change them here.

Rules for what is stored, each checked before anything is written (``InvalidInputError``
naming the field, nothing changed):
- the webhook URL is http(s) with a host (``contracts.alerts.webhook_url_error``);
- a secret is never stored: ``secret_env`` names the limiter's environment variable
  that holds it, and the limiter reads it when it signs;
- thresholds are whole percentages of a budget, 1 to 1,000, at least one;
- the error rate is above 0 and at most 100 %, over 1 to 1,440 minutes.
Every change is audited in its transaction (``alert.add``, ``alert.remove``), without
the URL's path (often a secret itself: Slack's are).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.errors import InvalidInputError, NotFoundError
from watchllm_shared.contracts.alerts import (
    AlertFormat,
    AlertKind,
    env_name_error,
    target_of,
    webhook_url_error,
)

DEFAULT_THRESHOLDS = (50, 80, 100)
DEFAULT_ERROR_RATE_PERCENT = Decimal(10)
DEFAULT_ERROR_RATE_MINUTES = 5

_SELECT = (
    "SELECT r.id, r.project_id, p.name AS project_name, r.webhook_url, r.secret_env, r.format,"
    " r.kinds, r.thresholds, r.error_rate_percent, r.error_rate_minutes, r.created_at"
    " FROM alert_rules r LEFT JOIN projects p ON p.id = r.project_id"
)


@dataclass(frozen=True, slots=True)
class AlertRule:
    id: uuid.UUID
    project_id: uuid.UUID | None
    project_name: str | None
    webhook_url: str
    secret_env: str | None
    format: AlertFormat
    kinds: tuple[AlertKind, ...]
    thresholds: tuple[int, ...]
    error_rate_percent: Decimal
    error_rate_minutes: int
    created_at: datetime

    @property
    def target(self) -> str:
        return target_of(self.webhook_url)

    def watches(self, project_id: uuid.UUID, kind: AlertKind) -> bool:
        return kind in self.kinds and self.project_id in (None, project_id)

    @classmethod
    def from_row(cls, row: Any) -> AlertRule:
        return cls(
            id=row["id"], project_id=row["project_id"], project_name=row["project_name"],
            webhook_url=row["webhook_url"], secret_env=row["secret_env"],
            format=AlertFormat(row["format"]),
            kinds=tuple(AlertKind(k) for k in row["kinds"]),
            thresholds=tuple(row["thresholds"]),
            error_rate_percent=row["error_rate_percent"],
            error_rate_minutes=row["error_rate_minutes"], created_at=row["created_at"],
        )  # fmt: skip


def _check(
    url: str, secret_env: str | None, kinds: Sequence[AlertKind], thresholds: Sequence[int],
    error_rate_percent: Decimal, error_rate_minutes: int,
) -> None:  # fmt: skip
    problems = []
    if (error := webhook_url_error(url)) is not None:
        problems.append(f"webhook: {error}")
    if secret_env is not None and (error := env_name_error(secret_env)) is not None:
        problems.append(f"secret env: {error}")
    if not kinds:
        problems.append("on: name at least one kind of alert")
    if not thresholds or any(not 1 <= t <= 1000 for t in thresholds):
        problems.append("thresholds: whole percentages from 1 to 1000, at least one")
    if not error_rate_percent.is_finite() or not 0 < error_rate_percent <= 100:
        problems.append("error rate percent: above 0 and at most 100")
    elif error_rate_percent != error_rate_percent.quantize(Decimal("0.01")):
        problems.append("error rate percent: at most 2 decimal places")
    if not 1 <= error_rate_minutes <= 1440:
        problems.append("error rate minutes: from 1 to 1440")
    if problems:
        raise InvalidInputError("; ".join(problems))


class AlertStore:
    def __init__(self, pool: asyncpg.Pool, actor: str = "cli") -> None:
        self._pool = pool
        self._actor = actor

    async def add_rule(
        self, webhook_url: str, kinds: Sequence[AlertKind], *, project_name: str | None = None,
        secret_env: str | None = None, format: AlertFormat = AlertFormat.JSON,
        thresholds: Sequence[int] = DEFAULT_THRESHOLDS,
        error_rate_percent: Decimal = DEFAULT_ERROR_RATE_PERCENT,
        error_rate_minutes: int = DEFAULT_ERROR_RATE_MINUTES,
    ) -> AlertRule:  # fmt: skip
        kinds = tuple(dict.fromkeys(kinds))
        thresholds = tuple(sorted(set(thresholds)))
        _check(webhook_url, secret_env, kinds, thresholds, error_rate_percent,
               error_rate_minutes)  # fmt: skip
        rule_id = uuid.uuid4()
        async with self._pool.acquire() as conn, conn.transaction():
            project_id = None
            if project_name is not None:
                project_id = await conn.fetchval("SELECT id FROM projects WHERE name = $1",
                                                 project_name)  # fmt: skip
                if project_id is None:
                    raise NotFoundError(f"no project named {project_name!r}")
            await conn.execute(
                "INSERT INTO alert_rules (id, project_id, webhook_url, secret_env, format, kinds,"
                " thresholds, error_rate_percent, error_rate_minutes)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                rule_id, project_id, webhook_url, secret_env, format.value,
                [k.value for k in kinds], list(thresholds), error_rate_percent,
                error_rate_minutes,
            )  # fmt: skip
            await audit(conn, self._actor, "alert.add", project_id, None, {
                "rule_id": str(rule_id), "target": target_of(webhook_url),
                "kinds": [k.value for k in kinds], "format": format.value,
                "signed": secret_env is not None,
            })  # fmt: skip
            row = await conn.fetchrow(_SELECT + " WHERE r.id = $1", rule_id)
        return AlertRule.from_row(row)

    async def list_rules(self, project_name: str | None = None) -> list[AlertRule]:
        """Every rule (of one project and the rules for every project, when named)."""
        if project_name is None:
            rows = await self._pool.fetch(_SELECT + " ORDER BY r.created_at, r.id")
        else:
            rows = await self._pool.fetch(
                _SELECT + " WHERE p.name = $1 OR r.project_id IS NULL ORDER BY r.created_at, r.id",
                project_name,
            )  # fmt: skip
        return [AlertRule.from_row(r) for r in rows]

    async def get_rule(self, rule_id: uuid.UUID) -> AlertRule:
        row = await self._pool.fetchrow(_SELECT + " WHERE r.id = $1", rule_id)
        if row is None:
            raise NotFoundError(f"no alert rule with id {rule_id}")
        return AlertRule.from_row(row)

    async def remove_rule(self, rule_id: uuid.UUID) -> AlertRule:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_SELECT + " WHERE r.id = $1 FOR UPDATE OF r", rule_id)
            if row is None:
                raise NotFoundError(f"no alert rule with id {rule_id}")
            rule = AlertRule.from_row(row)
            await conn.execute("DELETE FROM alert_rules WHERE id = $1", rule_id)
            await audit(conn, self._actor, "alert.remove", rule.project_id, None,
                        {"rule_id": str(rule_id), "target": rule.target})  # fmt: skip
        return rule
