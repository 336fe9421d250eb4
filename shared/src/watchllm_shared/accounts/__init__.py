"""Projects, API keys, plans, settings, dashboard users and sessions in Postgres (see
``store``, ``users`` and ``sessions`` for the rules)."""

from watchllm_shared.accounts.audit import AuditEntry, recent_audit
from watchllm_shared.accounts.body_logging import BodyLoggingStore
from watchllm_shared.accounts.budgets import BudgetStore
from watchllm_shared.accounts.errors import (
    AccountError,
    AlreadyExistsError,
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from watchllm_shared.accounts.limits import LimitStore
from watchllm_shared.accounts.models import (
    DEFAULT_ROTATION_GRACE_SECONDS,
    MAX_ROTATION_GRACE_SECONDS,
    ApiKey,
    BodyLogging,
    Budgets,
    CacheSettings,
    CreatedKey,
    KeyGrant,
    Plan,
    Project,
    ProjectLimits,
)
from watchllm_shared.accounts.sessions import SessionPolicy, SessionStore, SignedIn
from watchllm_shared.accounts.store import AccountStore
from watchllm_shared.accounts.users import (
    Role,
    User,
    UserStore,
    require_admin,
    require_body_reader,
)

__all__ = [
    "DEFAULT_ROTATION_GRACE_SECONDS",
    "MAX_ROTATION_GRACE_SECONDS",
    "AccountError",
    "AccountStore",
    "AlreadyExistsError",
    "ApiKey",
    "AuditEntry",
    "AuthenticationError",
    "BodyLogging",
    "BodyLoggingStore",
    "BudgetStore",
    "Budgets",
    "CacheSettings",
    "CreatedKey",
    "InvalidInputError",
    "KeyGrant",
    "LimitStore",
    "NotFoundError",
    "PermissionDeniedError",
    "Plan",
    "Project",
    "ProjectLimits",
    "Role",
    "SessionPolicy",
    "SessionStore",
    "SignedIn",
    "User",
    "UserStore",
    "recent_audit",
    "require_admin",
    "require_body_reader",
]
