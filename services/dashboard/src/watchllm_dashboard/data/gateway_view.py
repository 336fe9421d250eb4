"""What the gateways see of the cache, the limiter and Redis, read from their state reports
(``watchllm_shared.contracts.gateway_state``) and the cache's store stream, and judged.

A heartbeat says a service runs; these say whether it answers. Judgement, per part:

- cache: ``degraded`` when a replica's semantic breaker is open, when a replica timed out
  semantic lookups in its recent window, or when ``STORE_BACKLOG_DEGRADED`` or more
  answers wait on the store stream for the cache service (pending + lag of its group).
- limiter: ``degraded`` while a replica is in a limiter outage, or when a replica decided
  requests by its failure policy (fail-open: let through unchecked; fail-closed: 503) in
  its recent window.
- events: ``degraded`` while a replica holds events Redis refused, or when one dropped
  events in its recent window; ``unknown`` without reports.

Each reason names the replica and the numbers, in words an operator can act on. No
Streamlit here; the page shows it (``views/health.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from watchllm_shared.contracts.cache import CACHE_STORE_GROUP, CACHE_STORE_STREAM
from watchllm_shared.contracts.gateway_state import GatewayState, read_gateway_states

STORE_BACKLOG_DEGRADED = 1_000


@dataclass(frozen=True, slots=True)
class StoreBacklog:
    pending: int  # delivered to the cache service, not yet acknowledged
    lag: int | None  # not yet delivered (None: Redis cannot say, e.g. after a trim)


@dataclass(frozen=True, slots=True)
class GatewayView:
    states: list[GatewayState]
    store_backlog: StoreBacklog | None  # None: no cache group (cache service never ran)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str  # "up" or "degraded"
    reasons: list[str] = field(default_factory=list)


async def read_gateway_view(redis: aioredis.Redis) -> GatewayView:
    return GatewayView(await read_gateway_states(redis), await store_backlog(redis))


async def store_backlog(
    redis: aioredis.Redis, stream: str = CACHE_STORE_STREAM, group_name: str = CACHE_STORE_GROUP
) -> StoreBacklog | None:
    """What waits for the cache service on its store stream (None: no such group yet)."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream yet
        return None
    for group in groups:
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == group_name:
            lag = group.get("lag")
            if lag:
                lag = await _checked_lag(redis, stream, group.get("last-delivered-id"), int(lag))
            return StoreBacklog(int(group.get("pending") or 0),
                                None if lag is None else int(lag))  # fmt: skip
    return None


async def _checked_lag(redis: aioredis.Redis, stream: str, last_delivered: object, lag: int) -> int:
    """Redis's ``lag`` drifts up for good whenever entries are trimmed (``MAXLEN``) before
    the group read them: it counts them as added, never as read. So it is believed only
    when an entry past the group's last delivered one exists, and never beyond the
    stream's length (one XRANGE of one entry and one XLEN; seen in CI as "6,374 unread"
    with a cache service reading every store at once)."""
    last = last_delivered.decode() if isinstance(last_delivered, bytes) else str(last_delivered)
    if not await redis.xrange(stream, min=f"({last}", max="+", count=1):
        return 0
    return min(lag, int(await redis.xlen(stream)))


def _minutes(state: GatewayState) -> str:
    window = min(state.window_seconds, (state.at - state.started_at).total_seconds())
    return f"{max(1, round(window / 60))} min"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def judge_cache(view: GatewayView) -> Verdict:
    reasons = []
    for s in view.states:
        if s.semantic_breaker is None:
            continue
        said = []
        if s.recent.semantic_timeouts:
            said.append(f"timed out {_plural(s.recent.semantic_timeouts, 'semantic lookup')}"
                        f" in the last {_minutes(s)}")  # fmt: skip
        if s.semantic_breaker == "open":
            said.append("breaker open (semantic asks paused, one probe a second)")
        if said:
            reasons.append(f"{s.instance} " + ", ".join(said))
    backlog = view.store_backlog
    if backlog is not None:
        waiting = backlog.pending + (backlog.lag or 0)
        if waiting >= STORE_BACKLOG_DEGRADED:
            reasons.append(
                f"{waiting:,} answers wait to be stored (store stream:"
                f" {backlog.pending:,} pending, {backlog.lag or 0:,} unread)"
            )
    return Verdict("degraded" if reasons else "up", reasons)


def judge_limiter(view: GatewayView) -> Verdict:
    reasons = []
    for s in view.states:
        said = []
        if s.recent.limiter_failed_open:
            said.append(f"let {_plural(s.recent.limiter_failed_open, 'request')} through"
                        f" unchecked (fail-open) in the last {_minutes(s)}")  # fmt: skip
        if s.recent.limiter_failed_closed:
            said.append(f"refused {_plural(s.recent.limiter_failed_closed, 'request')}"
                        f" with 503 (fail-closed) in the last {_minutes(s)}")  # fmt: skip
        if s.limiter_failing:
            said.append("the limiter is not answering now")
        if said:
            reasons.append(f"{s.instance} " + ", ".join(said))
    return Verdict("degraded" if reasons else "up", reasons)


def judge_events(view: GatewayView) -> Verdict:
    if not view.states:  # nobody else reports on the gateways' writes
        return Verdict("unknown")
    reasons = []
    for s in view.states:
        said = []
        if s.events_write_error is not None and s.events_buffered:
            said.append(f"holds {_plural(s.events_buffered, 'event')} in memory: Redis"
                        f" refuses them ({s.events_write_error})")  # fmt: skip
        if s.recent.events_dropped:
            said.append(f"dropped {_plural(s.recent.events_dropped, 'event')}"
                        f" in the last {_minutes(s)}")  # fmt: skip
        if said:
            reasons.append(f"{s.instance} " + ", ".join(said))
    return Verdict("degraded" if reasons else "up", reasons)
