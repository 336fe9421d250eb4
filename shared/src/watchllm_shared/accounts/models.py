"""Plain records returned by the accounts store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from watchllm_shared.contracts.budgets import usd_to_nanos
from watchllm_shared.contracts.request_bodies import DEFAULT_REDACTIONS, DEFAULT_RETENTION_DAYS


class Plan(StrEnum):
    FREE = "FREE"
    STARTER = "STARTER"
    PRO = "PRO"


@dataclass(frozen=True, slots=True)
class Budgets:
    """A project's or a key's budgets in USD per calendar UTC day and month (None: none)."""

    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None

    def describe(self) -> str:
        def text(value: Decimal | None) -> str:
            return "-" if value is None else f"{value.normalize():f} USD"

        return f"daily {text(self.daily_usd)}, monthly {text(self.monthly_usd)}"


@dataclass(frozen=True, slots=True)
class Project:
    id: UUID
    name: str
    plan: Plan
    created_at: datetime
    budgets: Budgets = field(default_factory=Budgets)


# The longest an old key may keep working after a rotation (CLI, dashboard and store).
MAX_ROTATION_GRACE_SECONDS = 30 * 86_400
# How long it keeps working unless the operator says otherwise: long enough to roll the
# new key out to the callers. 0 stops it at once (then it is a revocation).
DEFAULT_ROTATION_GRACE_SECONDS = 3_600


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: UUID
    project_id: UUID
    project_name: str
    name: str | None
    display_prefix: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    rpm_limit: int | None
    tpm_limit: int | None
    daily_budget_usd: Decimal | None = None
    monthly_budget_usd: Decimal | None = None

    @property
    def rotated(self) -> bool:
        """Replaced by a rotation (working until ``expires_at``, or already stopped)."""
        return self.expires_at is not None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: ``secret`` exists only here and is shown to the operator once."""

    key: ApiKey
    secret: str


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What the gateway needs to authorise a request made with one key."""

    key_id: UUID
    project_id: UUID
    project_name: str
    plan: Plan
    active: bool  # False once revoked or past its rotation grace period
    allowed_models: tuple[str, ...] | None  # contracts/model_patterns; None: gateway default
    requests_per_day: int  # the plan's quota (the limiter's fallback before its sync)
    cache: CacheSettings = field(default_factory=lambda: CacheSettings())
    bodies: BodyLogging = field(default_factory=lambda: BodyLogging())


@dataclass(frozen=True, slots=True)
class BodyLogging:
    """Whether a project's request and answer bodies are stored (``body_logging``)."""

    enabled: bool = False
    retention_days: int = DEFAULT_RETENTION_DAYS
    redactions: tuple[str, ...] = DEFAULT_REDACTIONS  # named ones and regexes

    def describe(self) -> str:
        state = "on" if self.enabled else "off"
        return (f"bodies {state}, retention {self.retention_days} days,"
                f" redact {','.join(self.redactions) or '-'} (secrets always)")  # fmt: skip


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """A project's cache settings (per-request headers may narrow them)."""

    enabled: bool = True
    mode: str = "semantic"  # "exact" or "semantic"
    similarity_threshold: float | None = None  # None: the cache service's default
    ttl_seconds: int = 86_400


@dataclass(frozen=True, slots=True)
class ProjectLimits:
    """Every limit of one project, as the limiter keeps it in Redis."""

    project_id: UUID
    requests_per_day: int
    rpm: int | None
    tpm: int | None
    key_limits: dict[UUID, tuple[int | None, int | None]]  # key id -> (rpm, tpm)
    # Requests in flight at once; None: the gateways' default (project), none (key).
    concurrency: int | None = None
    key_concurrency: dict[UUID, int] = field(default_factory=dict)  # key id -> limit
    budgets: Budgets = field(default_factory=Budgets)
    key_budgets: dict[UUID, Budgets] = field(default_factory=dict)  # keys with any

    def as_hash(self) -> dict[str, int]:
        """Fields of the limits hash (watchllm_shared.contracts.limits)."""
        fields = {"day": self.requests_per_day}
        if self.rpm is not None:
            fields["rpm"] = self.rpm
        if self.tpm is not None:
            fields["tpm"] = self.tpm
        if self.concurrency is not None:
            fields["conc"] = self.concurrency
        for key_id, limit in self.key_concurrency.items():
            fields[f"k:{key_id}:conc"] = limit
        for key_id, (rpm, tpm) in self.key_limits.items():
            if rpm is not None:
                fields[f"k:{key_id}:rpm"] = rpm
            if tpm is not None:
                fields[f"k:{key_id}:tpm"] = tpm
        for prefix, budgets in [("", self.budgets)] + [
            (f"k:{key_id}:", b) for key_id, b in self.key_budgets.items()
        ]:  # nano-dollars (contracts.budgets)
            if budgets.daily_usd is not None:
                fields[f"{prefix}bd"] = usd_to_nanos(budgets.daily_usd)
            if budgets.monthly_usd is not None:
                fields[f"{prefix}bm"] = usd_to_nanos(budgets.monthly_usd)
        return fields
