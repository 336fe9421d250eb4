"""The rate-limit contract between the gateway (asks) and the limiter service (owns the
algorithm, a Redis Functions library; see services/limiter/.../library.lua).

Every key of one call carries the project id as its Redis Cluster hash tag. The
gateway asks with one ``FCALL watchllm_limit_check``; the limiter service charges
tokens and spend with one ``FCALL watchllm_charge_batch`` per project per batch of
events (``watchllm_limit_charge`` and ``watchllm_spend_charge`` charge one event:
limiters before library version 10) and keeps ``limits_key`` (a hash of the
project's limits, fields below) in step with Postgres.

Limits hash fields: ``day`` (requests per UTC day, from the plan), ``rpm``/``tpm``
(project overrides), ``k:<key id>:rpm``/``k:<key id>:tpm`` (per-key overrides),
``conc``/``k:<key id>:conc`` (requests in flight at once), ``bd``/``bm`` and
``k:<key id>:bd``/``k:<key id>:bm`` (budgets in nano-dollars: ``contracts.budgets``).
An absent field means no such limit; an absent ``day`` falls back to the plan quota the
gateway passes, an absent ``conc`` to the gateway's default per-project concurrency.

Requests in flight hold a slot in ``inflight_key`` (project, key): members are request
ids, scored by the end of their lease; the gateway renews leases with
``FCALL watchllm_concurrency_renew`` and releases a slot with ``ZREM``.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from watchllm_shared.contracts.budgets import (
    BudgetScope,
    BudgetState,
    spend_keys,
    spend_marker_key,
)

LIBRARY_NAME = "watchllm_limiter"
CHECK_FUNCTION = "watchllm_limit_check"
CHARGE_FUNCTION = "watchllm_limit_charge"
CHARGE_BATCH_FUNCTION = "watchllm_charge_batch"  # library version 10+
VERSION_FUNCTION = "watchllm_limiter_version"
RENEW_FUNCTION = "watchllm_concurrency_renew"

# Postgres NOTIFY channel the accounts module signals on any change of limits; the
# payload is the project id.
LIMITS_CHANGED_CHANNEL = "watchllm_limits_changed"


def _prefix(project_id: UUID) -> str:
    return f"watchllm:limit:{{{project_id}}}"


def limits_key(project_id: UUID) -> str:
    return f"{_prefix(project_id)}:limits"


def check_keys(project_id: UUID, key_id: UUID) -> list[str]:
    """KEYS of ``watchllm_limit_check``, in the library's order."""
    p = _prefix(project_id)
    return [
        f"{p}:limits",
        f"{p}:day",
        f"{p}:rpm",
        f"{p}:k:{key_id}:rpm",
        f"{p}:tpm",
        f"{p}:k:{key_id}:tpm",
        f"{p}:tpm:total",
        f"{p}:k:{key_id}:tpm:total",
        f"{p}:inflight",
        f"{p}:k:{key_id}:inflight",
        *spend_keys(project_id, key_id),
    ]


def inflight_key(project_id: UUID, key_id: UUID | None = None) -> str:
    """Sorted set of the requests in flight (members request ids, scored by the end of
    their lease in ms), project or key."""
    p = _prefix(project_id)
    return f"{p}:inflight" if key_id is None else f"{p}:k:{key_id}:inflight"


def day_counter_key(project_id: UUID) -> str:
    """Hash of admitted requests per UTC day (field: days since the epoch)."""
    return f"{_prefix(project_id)}:day"


def request_log_key(project_id: UUID, key_id: UUID | None = None) -> str:
    """Sorted set of the last minute's admitted requests (scored by ms), project or key."""
    p = _prefix(project_id)
    return f"{p}:rpm" if key_id is None else f"{p}:k:{key_id}:rpm"


def token_log_key(project_id: UUID, key_id: UUID | None = None) -> str:
    """Sorted set of the last minute's token charges, members ``<event id>:<tokens>``."""
    p = _prefix(project_id)
    return f"{p}:tpm" if key_id is None else f"{p}:k:{key_id}:tpm"


def charge_keys(project_id: UUID, key_id: UUID) -> list[str]:
    """KEYS of ``watchllm_limit_charge``, in the library's order."""
    p = _prefix(project_id)
    return [
        f"{p}:limits",
        f"{p}:tpm",
        f"{p}:k:{key_id}:tpm",
        f"{p}:tpm:total",
        f"{p}:k:{key_id}:tpm:total",
    ]


def charge_batch_keys(
    project_id: UUID, key_ids: list[UUID], costed_event_ids: list[UUID]
) -> list[str]:
    """KEYS of ``watchllm_charge_batch`` (events of one project: one hash slot), in the
    library's order: the project's, then each key's, then the spend marker of each event
    with a cost."""
    p = _prefix(project_id)
    keys = [f"{p}:limits", f"{p}:tpm", f"{p}:tpm:total", *spend_keys(project_id, project_id)[:2]]
    for key_id in key_ids:
        keys += [f"{p}:k:{key_id}:tpm", f"{p}:k:{key_id}:tpm:total",
                 *spend_keys(project_id, key_id)[2:]]  # fmt: skip
    keys += [spend_marker_key(project_id, event_id) for event_id in costed_event_ids]
    return keys


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """The answer of one check. Limits are None when none of that kind applies."""

    allowed: bool
    request_limit: int | None
    requests_remaining: int | None
    requests_reset_ms: int | None
    token_limit: int | None
    tokens_remaining: int | None
    tokens_reset_ms: int | None
    retry_after_ms: int
    concurrency_limit: int | None = None  # the tightest of project and key, if any
    concurrency_remaining: int | None = None  # slots left after this request
    refused_by_concurrency: bool = False  # refused, and by concurrency limits only
    budget: BudgetState | None = None  # the tightest budget, when one applies

    @classmethod
    def from_reply(cls, reply: list[int]) -> LimitDecision:
        def value(i: int) -> int | None:
            return None if int(reply[i]) < 0 else int(reply[i])

        requests = value(1) is not None
        tokens = value(4) is not None
        concurrency = len(reply) > 10 and value(8) is not None  # library version 7+
        return cls(
            allowed=int(reply[0]) == 1,
            request_limit=value(1),
            requests_remaining=value(2) if requests else None,
            requests_reset_ms=value(3) if requests else None,
            token_limit=value(4),
            tokens_remaining=value(5) if tokens else None,
            tokens_reset_ms=value(6) if tokens else None,
            retry_after_ms=int(reply[7]),
            concurrency_limit=value(8) if concurrency else None,
            concurrency_remaining=value(9) if concurrency else None,
            refused_by_concurrency=len(reply) > 10 and int(reply[10]) == 1,
            budget=_budget(reply),
        )


def _budget(reply: list[int]) -> BudgetState | None:
    """Library version 8+: {refused, scope, limit, spent, reset at, reset in} after the
    concurrency fields; scope 0 when no budget applies."""
    if len(reply) < 17 or int(reply[12]) == 0:
        return None
    return BudgetState(
        scope=BudgetScope(int(reply[12])), limit_nanos=int(reply[13]),
        spent_nanos=int(reply[14]), reset_at_ms=int(reply[15]), reset_in_ms=int(reply[16]),
        refused=int(reply[11]) == 1,
    )  # fmt: skip


# An upstream deployment's capacity (a routes file's ``rpm``/``tpm``): the gateway asks
# ``FCALL watchllm_deployment_take`` before each attempt at a limited deployment and
# charges the answer's tokens with ``FCALL watchllm_deployment_charge`` (library
# version 9). The deployment's name is the keys' hash tag: apart from every project's.
DEPLOYMENT_TAKE_FUNCTION = "watchllm_deployment_take"
DEPLOYMENT_CHARGE_FUNCTION = "watchllm_deployment_charge"


def deployment_keys(name: str) -> list[str]:
    """KEYS of ``watchllm_deployment_take``: request log, token log, token total (the
    charge takes the last two). ``name``: the routes file's deployment name, which has
    no braces (``routing/schema.py``)."""
    p = f"watchllm:deployment:{{{name}}}"
    return [f"{p}:rpm", f"{p}:tpm", f"{p}:tpm:total"]
