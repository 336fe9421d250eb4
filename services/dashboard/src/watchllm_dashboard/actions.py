"""Everything the dashboard changes, and the Postgres reads its pages need.

Each change goes through the same shared code the CLI uses (``AccountStore``,
``LimitStore``, ``BudgetStore``, ``UserStore``, ``cache_admin``), with the signed-in
user as the audit log's actor (``dashboard:<username>``). Every change calls
``require_admin`` first: a viewer is refused here, whatever the page shows or hides.

Logged request and answer bodies (issue 17) are read here too, not by a page: only for
admins and analysts (``require_body_reader``), and each read that finds them writes
``request.bodies_viewed`` (the request id, its project) to the audit log before they are
handed back, so no body reaches a page unaudited (an audit that fails shows nothing). A
search of their text writes ``request.bodies_searched`` (the text, the window, how many
requests matched), since its excerpts are bodies too.
"""

from __future__ import annotations

from collections.abc import Collection, Coroutine, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import pandas as pd

from watchllm_dashboard.data.bodies import LoggedBodies, read_bodies, search_bodies
from watchllm_dashboard.data.budgets import Owner, Spend, budget_spend
from watchllm_dashboard.data.cache_entries import CachedEntry, cached_entries
from watchllm_dashboard.data.limits import LimitUsage, limit_usage
from watchllm_dashboard.data.window import TimeWindow
from watchllm_dashboard.runtime import Runtime
from watchllm_shared.accounts import (
    AccountStore,
    ApiKey,
    AuditEntry,
    Budgets,
    BudgetStore,
    CacheSettings,
    CreatedKey,
    LimitStore,
    Plan,
    Project,
    ProjectLimits,
    Role,
    User,
    UserStore,
    recent_audit,
    require_admin,
    require_body_reader,
)
from watchllm_shared.accounts.audit import audit
from watchllm_shared.accounts.budgets import Keep
from watchllm_shared.cache_admin import request_delete, request_flush

T = TypeVar("T")
BODIES_VIEWED = "request.bodies_viewed"
BODIES_SEARCHED = "request.bodies_searched"


class Actions:
    """What one signed-in user may read and (admins only) change."""

    def __init__(self, runtime: Runtime, user: User) -> None:
        self._rt = runtime
        self.user = user
        self._actor = f"dashboard:{user.username}"

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._rt.run(coroutine)

    def _accounts(self) -> AccountStore:
        return AccountStore(self._rt.pool, actor=self._actor)

    def _admin_accounts(self) -> AccountStore:
        require_admin(self.user)
        return self._accounts()

    # -- reads (any signed-in user) --------------------------------------------------

    def projects(self) -> list[Project]:
        return self._run(self._accounts().list_projects())

    def keys(self, project: str) -> list[ApiKey]:
        return self._run(self._accounts().list_keys(project))

    def keys_by_id(self, key_ids: Collection[UUID]) -> dict[UUID, ApiKey]:
        if not key_ids:
            return {}
        return {k.id: k for k in self._run(self._accounts().get_keys(key_ids))}

    def limits(self, project: Project) -> ProjectLimits:
        return self._run(LimitStore(self._rt.pool).project_limits(project.id))

    def limit_usage(self, limits: ProjectLimits, labels: dict[UUID, str]) -> list[LimitUsage]:
        return self._run(limit_usage(self._rt.redis, limits, labels))

    def spend(self, project: Project, owners: list[Owner], now: datetime) -> list[Spend]:
        return self._run(budget_spend(self._rt.redis, project.id, owners, now))

    def cache_settings(self, project: str) -> CacheSettings:
        return self._run(self._accounts().get_cache_settings(project))

    def allowed_models(self, project: str) -> list[str] | None:
        return self._run(self._accounts().get_allowed_models(project))

    def cached_entries(
        self, project: Project, ranked: Sequence[str] = (), limit: int = 50
    ) -> list[CachedEntry]:
        return self._run(cached_entries(self._rt.redis, project.id, ranked, limit))

    def audit(self, project: Project | None = None, limit: int = 50) -> list[AuditEntry]:
        return self._run(recent_audit(self._rt.pool, limit, project.id if project else None))

    def request_bodies(self, project: Project, request_id: str) -> LoggedBodies | None:
        """The request's logged bodies (None: not logged, expired, or not this project's);
        audited when found. The analytics read is never cached (``Runtime.analytics``)."""
        require_body_reader(self.user)
        bodies = read_bodies(self._rt.analytics, project.id, request_id)
        if bodies is not None:
            details = {"request_id": request_id, "project": project.name}
            self._run(audit(self._rt.pool, self._actor, BODIES_VIEWED,
                            project.id, None, details))  # fmt: skip
        return bodies

    def search_bodies(self, project: Project, window: TimeWindow, text: str) -> pd.DataFrame:
        """The project's requests in the window whose logged bodies contain ``text``, with
        excerpts (``data.bodies.search_bodies``); audited, whatever it finds."""
        require_body_reader(self.user)
        found = search_bodies(self._rt.analytics, project.id, window, text)
        details = {"project": project.name, "text": text, "window": window.describe(),
                   "matches": len(found)}  # fmt: skip
        self._run(audit(self._rt.pool, self._actor, BODIES_SEARCHED,
                        project.id, None, details))  # fmt: skip
        return found

    def users(self) -> list[User]:
        require_admin(self.user)
        return self._run(UserStore(self._rt.pool).list_users())

    # -- changes (admins only) -------------------------------------------------------

    def create_project(self, name: str, plan: Plan) -> Project:
        return self._run(self._admin_accounts().create_project(name, plan))

    def set_plan(self, project: str, plan: Plan) -> Project:
        return self._run(self._admin_accounts().set_plan(project, plan))

    def set_project_limits(self, project: str, rpm: int | None, tpm: int | None) -> ProjectLimits:
        require_admin(self.user)
        store = LimitStore(self._rt.pool, actor=self._actor)
        return self._run(store.set_project_limits(project, rpm, tpm))

    def set_key_limits(self, key_id: UUID, rpm: int | None, tpm: int | None) -> ProjectLimits:
        require_admin(self.user)
        store = LimitStore(self._rt.pool, actor=self._actor)
        return self._run(store.set_key_limits(key_id, rpm, tpm))

    def set_project_budgets(
        self, project: str, daily: Decimal | None | Keep, monthly: Decimal | None | Keep
    ) -> Budgets:
        require_admin(self.user)
        store = BudgetStore(self._rt.pool, actor=self._actor)
        return self._run(store.set_project_budgets(project, daily, monthly))

    def set_key_budgets(
        self, key_id: UUID, daily: Decimal | None | Keep, monthly: Decimal | None | Keep
    ) -> Budgets:
        require_admin(self.user)
        store = BudgetStore(self._rt.pool, actor=self._actor)
        return self._run(store.set_key_budgets(key_id, daily, monthly))

    def set_cache_settings(
        self, project: str, enabled: bool, mode: str, threshold: float | None, ttl_seconds: int
    ) -> CacheSettings:
        store = self._admin_accounts()
        return self._run(store.set_cache_settings(project, enabled, mode, threshold, ttl_seconds))

    def set_allowed_models(self, project: str, patterns: list[str] | None) -> None:
        self._run(self._admin_accounts().set_allowed_models(project, patterns))

    def create_key(self, project: str, label: str | None) -> CreatedKey:
        return self._run(self._admin_accounts().create_key(project, label or None))

    def rotate_key(self, key_id: UUID, grace_seconds: int) -> CreatedKey:
        return self._run(self._admin_accounts().rotate_key(key_id, grace_seconds))

    def revoke_key(self, key_id: UUID) -> ApiKey:
        return self._run(self._admin_accounts().revoke_key(key_id))

    def flush_cache(self, project: str) -> Project:
        return self._run(request_flush(self._admin_accounts(), self._rt.redis, project))

    def delete_cache_entry(self, exact_key: str) -> None:
        self._run(request_delete(self._admin_accounts(), self._rt.redis, exact_key))

    def create_user(self, username: str, password: str, role: Role) -> User:
        require_admin(self.user)
        store = UserStore(self._rt.pool, actor=self._actor)
        return self._run(store.create_user(username, password, role))

    def disable_user(self, username: str) -> User:
        require_admin(self.user)
        return self._run(UserStore(self._rt.pool, actor=self._actor).disable_user(username))

    def enable_user(self, username: str) -> User:
        require_admin(self.user)
        return self._run(UserStore(self._rt.pool, actor=self._actor).enable_user(username))
