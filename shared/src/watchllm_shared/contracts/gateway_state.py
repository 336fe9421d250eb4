"""What each gateway replica sees of the parts it leans on, for the dashboard's Health page.

Heartbeats say a service is running; they cannot say that it answers the gateway in
time. So every gateway replica publishes a ``GatewayState`` every few seconds: its
counters since it started (``totals``) and over the last ``window_seconds``
(``recent``), and what holds now (the semantic-cache breaker, a limiter outage, events
waiting for Redis).

Keys: one JSON document per replica under ``gateway_state_key(instance)`` with a TTL of
``GATEWAY_STATE_TTL_SECONDS`` (a replica that is gone stops being shown), and the
replicas' names in the sorted set ``GATEWAY_STATES_KEY`` (score: when it last wrote, in
Unix ms), which every writer trims of names older than the TTL, so readers need no SCAN.

Add-only, like every contract: new fields get defaults, readers ignore unknown ones.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, ValidationError

GATEWAY_STATES_KEY = "watchllm:gateway:states"
GATEWAY_STATE_TTL_SECONDS = 15
RECENT_WINDOW_SECONDS = 300

BreakerState = Literal["closed", "open"]


def gateway_state_key(instance: str) -> str:
    return f"watchllm:gateway:state:{instance}"


class GatewayCounts(BaseModel):
    """What went wrong, counted (since start in ``totals``, in the window in ``recent``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    semantic_timeouts: int = 0  # semantic asks the cache service did not answer in time
    cache_lookup_failures: int = 0  # lookups turned into misses: timeouts and Redis errors
    limiter_failed_open: int = 0  # requests let through unchecked: limiter unavailable
    limiter_failed_closed: int = 0  # requests answered 503: limiter unavailable
    events_dropped: int = 0  # request events never written (buffer full, or at shutdown)
    cache_stores_dropped: int = 0  # answers never sent to be cached

    def minus(self, earlier: GatewayCounts) -> GatewayCounts:
        return GatewayCounts(**{
            name: getattr(self, name) - getattr(earlier, name)
            for name in GatewayCounts.model_fields
        })  # fmt: skip


class GatewayState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    instance: str
    at: datetime
    started_at: datetime
    window_seconds: int = RECENT_WINDOW_SECONDS  # ``recent`` covers at most this much
    totals: GatewayCounts = GatewayCounts()
    recent: GatewayCounts = GatewayCounts()
    # open: semantic asks paused after timeouts in a row (one probe a second); None: the
    # gateway runs without the cache.
    semantic_breaker: BreakerState | None = None
    limiter_failing: bool = False  # a limiter outage is on now (see gateway ratelimit.py)
    events_buffered: int = 0  # request events in memory, not yet written to Redis
    cache_stores_buffered: int = 0
    events_write_error: str | None = None  # why Redis refuses them now (None: it does not)


async def publish_gateway_state(redis: aioredis.Redis, state: GatewayState) -> None:
    """Write this replica's state (expires after the TTL) and list it, in one round trip."""
    now_ms = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    pipe.set(gateway_state_key(state.instance), state.model_dump_json(),
             ex=GATEWAY_STATE_TTL_SECONDS)  # fmt: skip
    pipe.zadd(GATEWAY_STATES_KEY, {state.instance: now_ms})
    pipe.zremrangebyscore(GATEWAY_STATES_KEY, "-inf", now_ms - GATEWAY_STATE_TTL_SECONDS * 1000)
    pipe.expire(GATEWAY_STATES_KEY, GATEWAY_STATE_TTL_SECONDS)
    await pipe.execute()


async def withdraw_gateway_state(redis: aioredis.Redis, instance: str) -> None:
    """A replica stopping takes its state off at once."""
    pipe = redis.pipeline(transaction=False)
    pipe.delete(gateway_state_key(instance))
    pipe.zrem(GATEWAY_STATES_KEY, instance)
    await pipe.execute()


async def read_gateway_states(redis: aioredis.Redis) -> list[GatewayState]:
    """Every live replica's state, by instance name; unreadable documents are skipped."""
    names = await redis.zrange(GATEWAY_STATES_KEY, 0, -1)
    if not names:
        return []
    raw = await redis.mget([gateway_state_key(_text(name)) for name in names])
    states = []
    for value in raw:
        if value is None:  # expired: that replica stopped writing
            continue
        try:
            states.append(GatewayState.model_validate_json(value))
        except ValidationError:
            continue
    return sorted(states, key=lambda s: s.instance)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
