"""Asking the limiter: one ``FCALL watchllm_limit_check`` per request.

The ask is on every request's path, so it goes through ``PackedCommands`` (packed by
hiredis on connections kept for it: about a third of the client CPU of redis-py's
``fcall``; ``make bench-limiter`` shows both). With tracing on it gets its own CLIENT
span (``FCALL``), as redis-py's instrumentation would have made.

The algorithm lives in the limiter service's Redis Functions library; the gateway only
asks and turns the answer into OpenAI-style headers (``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the ``-tokens``
variants when a token limit applies, the ``x-watchllm-budget-*`` headers when a budget
does: ``budgets``) or a 429 with ``retry-after``. With ``concurrency``
the same ask decides the concurrency limits too (``concurrency``: the in-flight sets,
the default per-project limit and the lease go with it; ``x-ratelimit-limit-concurrency``
and ``-remaining-concurrency`` on the answer, 429 ``concurrency_limit_exceeded`` when only
they refused), and an admitted request's slot is handed to ``concurrency`` to renew.

When Redis cannot answer within ``limiter_timeout_seconds`` (down, slow, or the
library not loaded yet), the configured policy applies: fail-open (default) lets the
request through without headers, fail-closed answers 503. Either way it is counted in
``watchllm_limiter_unavailable_total{policy}``; never a 500.

When Redis answers but refuses to write (``OOM`` at ``maxmemory``, ``MISCONF`` when it
cannot persist), it is not a passing outage but a state a caller may have brought about
(fill Redis, and the limits are off): ``limiter_write_refused_policy`` applies, closed
(503) unless the operator chooses open. The library's functions are flagged
``allow-oom`` (``library.lua``, version 6), so a Redis at ``maxmemory`` with
``noeviction`` still counts and refuses: this policy decides only for a library loaded
by an older limiter, or a Redis that cannot persist. A ``READONLY`` reply (a replica,
during a failover) is an outage like any other.

An *episode* begins with the first failure and ends when an ask that began after it is
answered; it is logged once when it begins (with the error's type and what timed out)
and once when it ends, however many asks were in flight. A failure of an ask that began
before Redis's last answer is old news and begins nothing (concurrent asks finishing in
any order once made the log flip ten times in 130 ms). During an episode requests get
the policy at once, and one ask at a time probes Redis, at most every
``_PROBE_EVERY_SECONDS``.

The deadline (default 0.5 s) is far above a healthy ask (~0.2 ms) on purpose, and it is
``PackedCommands``' ``reply_within`` (``watchllm_shared.redis_deadline``), which only
Redis can miss: not while the ask waits for a connection behind other commands with
Redis answering them, not while its reply waits in the socket for a busy loop. A plain
timeout turned load itself into fail-open, after Redis had already counted the
request: a gateway held at twice its capacity failed open 1,427-2,937 times in a few
seconds and admitted 2,450 requests against a limit of 1,087
(``tests/limiter/test_limits_under_overload.py``, ``test_ask_under_load.py``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.trace import SpanKind, Tracer
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError

from watchllm_gateway.budgets import budget_headers, budget_refused
from watchllm_gateway.concurrency import Concurrency, concurrency_refused
from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts.limits import CHECK_FUNCTION, LimitDecision, check_keys
from watchllm_shared.redis_packed import PackedCommands

log = logging.getLogger(__name__)

_PROBE_EVERY_SECONDS = 0.1

FailurePolicy = Literal["open", "closed"]


def format_reset(milliseconds: int) -> str:
    """OpenAI's reset format: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if milliseconds < 1000:
        return f"{max(milliseconds, 0)}ms"
    seconds = math.ceil(milliseconds / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _refuses_writes(exc: ResponseError) -> bool:
    """Redis is there and answering, but will not write: full (``OOM``, which redis-py
    raises as ``OutOfMemoryError``) or unable to persist (``MISCONF``)."""
    return isinstance(exc, OutOfMemoryError) or str(exc).startswith("MISCONF")


def limit_headers(decision: LimitDecision) -> dict[str, str]:
    headers: dict[str, str] = {}
    if decision.request_limit is not None:
        headers["x-ratelimit-limit-requests"] = str(decision.request_limit)
        headers["x-ratelimit-remaining-requests"] = str(decision.requests_remaining)
        headers["x-ratelimit-reset-requests"] = format_reset(decision.requests_reset_ms or 0)
    if decision.token_limit is not None:
        headers["x-ratelimit-limit-tokens"] = str(decision.token_limit)
        headers["x-ratelimit-remaining-tokens"] = str(decision.tokens_remaining)
        headers["x-ratelimit-reset-tokens"] = format_reset(decision.tokens_reset_ms or 0)
    if decision.concurrency_limit is not None:
        headers["x-ratelimit-limit-concurrency"] = str(decision.concurrency_limit)
        headers["x-ratelimit-remaining-concurrency"] = str(decision.concurrency_remaining)
    if decision.budget is not None:
        headers.update(budget_headers(decision.budget))
    return headers


@dataclass(frozen=True, slots=True)
class Admission:
    """The limiter's yes: headers for the answer, and for a request the cache may answer,
    the refusal that applies if it does not (a budget is spent: ``budgets``)."""

    headers: dict[str, str]
    unless_cached: GatewayError | None = None


class RateLimiter:
    def __init__(
        self,
        commands: PackedCommands,
        metrics: GatewayMetrics,
        timeout_seconds: float,
        policy: FailurePolicy,
        tracer: Tracer | None = None,
        write_refused_policy: FailurePolicy = "closed",
        concurrency: Concurrency | None = None,
        default_concurrency: int | None = None,  # a project's, unless it has its own
    ) -> None:
        self._commands = commands
        self._concurrency = concurrency
        self._concurrency_args: tuple[str | int, ...] = (  # ARGV 5 and 6, '' for none
            (default_concurrency or "", concurrency.lease_ms) if concurrency else ("", "")
        )
        self._tracer = tracer
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._policy = policy  # Redis unreachable or late
        self._refused_policy = write_refused_policy  # Redis answers, refusing to write
        self._episode_policy = policy
        self._failing = False  # an episode is on (see the module docstring)
        self._episode_began = 0.0
        self._answered_at = 0.0  # when Redis last answered an ask
        self._next_probe = 0.0
        self._probing = False
        # Requests decided by a policy since start, for the state report (plain ints).
        self.policy_applied: dict[FailurePolicy, int] = {"open": 0, "closed": 0}
        # Bound once: ``labels()`` costs a lock and a dict lookup on every request.
        self._allowed = metrics.limiter_decisions.labels("allowed")
        self._refused = metrics.limiter_decisions.labels("refused")

    async def check(self, grant: KeyGrant, request_id: str) -> dict[str, str]:
        """Admit the request or raise 429; returns the headers every answer carries."""
        return (await self.admit(grant, request_id)).headers

    async def admit(
        self, grant: KeyGrant, request_id: str, cache_may_answer: bool = False
    ) -> Admission:
        """``check``; with ``cache_may_answer``, a spent budget does not raise but comes
        back as ``unless_cached`` (the other limits were decided and consumed)."""
        started = time.perf_counter()
        probe = False
        if self._failing:
            if self._probing or started < self._next_probe:
                return Admission(self._apply_policy())
            probe = self._probing = True
        try:
            if self._tracer is None:
                reply = await self._ask(grant, request_id, cache_may_answer)
            else:
                with self._tracer.start_as_current_span(
                    "FCALL", kind=SpanKind.CLIENT,
                    attributes={"db.system": "redis", "db.statement": f"FCALL {CHECK_FUNCTION}"},
                ):  # fmt: skip
                    reply = await self._ask(grant, request_id, cache_may_answer)
        except ResponseError as exc:
            refused = _refuses_writes(exc)
            policy = self._refused_policy if refused else None
            return Admission(self._unavailable(exc, started, policy))
        except (RedisError, OSError, TimeoutError) as exc:
            return Admission(self._unavailable(exc, started))
        finally:
            if probe:
                self._probing = False
        self._answered(started)
        decision = LimitDecision.from_reply(reply)
        headers = limit_headers(decision)
        budget = decision.budget
        if decision.allowed:
            self._allowed.inc()
            if decision.concurrency_limit is not None and self._concurrency is not None:
                self._concurrency.hold(request_id)  # a slot in Redis: renewed until it ends
            if budget is not None and budget.refused:  # only a cache hit may answer it
                return Admission(headers, budget_refused(budget, headers))
            return Admission(headers)
        self._refused.inc()
        if budget is not None and budget.refused:  # over any rate limit: retrying won't do
            raise budget_refused(budget, headers)
        if decision.refused_by_concurrency and decision.concurrency_limit is not None:
            self._metrics.concurrency_refused.labels("limit").inc()
            raise concurrency_refused(decision.concurrency_limit, "this key or project", headers)
        retry_after = max(1, math.ceil(decision.retry_after_ms / 1000))
        headers["retry-after"] = str(retry_after)
        headers["retry-after-ms"] = str(max(decision.retry_after_ms, 0))
        raise GatewayError(
            429, "rate_limit_exceeded",
            f"Rate limit reached for this key or project; retry in {retry_after} s",
            headers=headers,
        )  # fmt: skip

    async def _ask(self, grant: KeyGrant, request_id: str, cache_may_answer: bool) -> Any:
        keys = check_keys(grant.project_id, grant.key_id)
        return await self._commands.call(
            "FCALL", CHECK_FUNCTION, len(keys), *keys,
            str(grant.key_id), grant.requests_per_day, request_id, "",
            *self._concurrency_args, "1" if cache_may_answer else "0",
            reply_within=self._timeout,
        )  # fmt: skip

    def _answered(self, started: float) -> None:
        now = time.perf_counter()
        self._metrics.limiter_ask.observe(now - started)
        self._answered_at = now
        if self._failing and started >= self._episode_began:
            log.warning("rate limiter answering again")
            self._failing = False

    def _unavailable(
        self, exc: BaseException, started: float, policy: FailurePolicy | None = None
    ) -> dict[str, str]:
        policy = policy or self._policy
        if not self._failing and started >= self._answered_at:
            log.error("rate limiter unavailable (%s: %s); failing %s", type(exc).__name__,
                      str(exc) or "no detail", policy)  # fmt: skip
            self._failing = True
            self._episode_began = time.perf_counter()
        if self._failing:
            self._next_probe = time.perf_counter() + _PROBE_EVERY_SECONDS
            self._episode_policy = policy  # what the requests that do not probe get
        return self._apply_policy(policy)

    @property
    def failing(self) -> bool:
        """An episode is on: Redis has not answered an ask since it began."""
        return self._failing

    def _apply_policy(self, policy: FailurePolicy | None = None) -> dict[str, str]:
        policy = policy or self._episode_policy
        self._metrics.limiter_unavailable.labels(policy).inc()
        self.policy_applied[policy] += 1
        if policy == "closed":
            raise GatewayError(
                503, "rate_limiter_unavailable", "Rate limiting is unavailable; retry shortly"
            )
        return {}
