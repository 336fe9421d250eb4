"""Projects, API keys, plans and settings in Postgres (see ``store`` for the rules)."""

from watchllm_shared.accounts.errors import (
    AccountError,
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
)
from watchllm_shared.accounts.limits import LimitStore
from watchllm_shared.accounts.models import (
    ApiKey,
    CacheSettings,
    CreatedKey,
    KeyGrant,
    Plan,
    Project,
    ProjectLimits,
)
from watchllm_shared.accounts.store import AccountStore

__all__ = [
    "AccountError",
    "AccountStore",
    "AlreadyExistsError",
    "ApiKey",
    "CacheSettings",
    "CreatedKey",
    "InvalidInputError",
    "KeyGrant",
    "LimitStore",
    "NotFoundError",
    "Plan",
    "Project",
    "ProjectLimits",
]
