"""The alert rules, read from Postgres (``watchllm_shared.accounts.alerts``) every
``limiter_alert_rules_refresh_seconds``, with project names for the alerts' text.

Postgres down: the rules last read stay in force (logged); before the first read there
are none, and a budget crossed meanwhile is raised at the project's next charge (the
spend stays over the threshold).

``removed``: the delivery consumer drops a queued alert whose rule was removed
(``watchllm alerts remove``), rather than retrying a webhook nobody wants any more.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from watchllm_shared.accounts.alerts import AlertRule, AlertStore
from watchllm_shared.contracts.alerts import AlertKind

log = logging.getLogger(__name__)

REMOVAL_MARGIN = timedelta(seconds=60)


class RuleCache:
    def __init__(self, pool: asyncpg.Pool, refresh_seconds: float) -> None:
        self._pool = pool
        self._refresh_seconds = refresh_seconds
        self._rules: tuple[AlertRule, ...] = ()
        self._names: dict[uuid.UUID, str] = {}
        self._read_from: datetime | None = None  # when the last successful read began

    def removed(self, rule_id: uuid.UUID, raised_at: datetime) -> bool:
        """Whether ``rule_id`` is gone: missing from a read that began well after the
        alert was raised (a rule raising an alert was in Postgres then, so a later read
        lists it unless it was removed; the margin covers clocks a minute apart)."""
        if self._read_from is None or self._read_from < raised_at + REMOVAL_MARGIN:
            return False
        return all(rule.id != rule_id for rule in self._rules)

    def watching(self, project_id: uuid.UUID, kind: AlertKind) -> list[AlertRule]:
        return [rule for rule in self._rules if rule.watches(project_id, kind)]

    def with_kind(self, kind: AlertKind) -> list[AlertRule]:
        """Rules on a condition of the whole deployment (dead letters, the limiter
        failing open): every rule naming the kind, whatever project it watches."""
        return [rule for rule in self._rules if kind in rule.kinds]

    def kinds(self) -> set[AlertKind]:
        return {kind for rule in self._rules for kind in rule.kinds}

    def project_name(self, project_id: uuid.UUID) -> str:
        return self._names.get(project_id, str(project_id))

    async def refresh(self) -> None:
        began = datetime.now(UTC)
        rules = tuple(await AlertStore(self._pool).list_rules())
        names = {r["id"]: r["name"] for r in await self._pool.fetch(
            "SELECT id, name FROM projects")} if rules else {}  # fmt: skip
        self._rules, self._names, self._read_from = rules, names, began

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alert rules not refreshed, Postgres: %s", exc)
            await asyncio.sleep(self._refresh_seconds)
