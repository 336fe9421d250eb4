"""Redis helpers shared by every service: client creation and stream plumbing.

Failure modes: connection errors surface as ``redis.RedisError`` subclasses; callers
decide the policy (the gateway's event publisher buffers and retries, consumers back
off). Nothing here swallows errors.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


async def redis_now_ms(redis: aioredis.Redis) -> int:
    """Redis's clock (TIME) in milliseconds: the one clock every replica shares, the one
    the limiter's library windows its counters by."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def create_redis(
    url: str,
    *,
    timeout_seconds: float = 2.0,
    max_connections: int = 64,
    socket_timeout: bool = True,
) -> aioredis.Redis:
    """An asyncio Redis client with a bounded, *blocking* pool and socket timeouts.

    The pool blocks: past ``max_connections`` concurrent commands, a command waits for
    a free connection (up to ``timeout_seconds``) instead of failing at once with
    "Too many connections" — under a burst the default pool would make the gateway
    apply its limiter failure policy to requests Redis could have answered in 0.2 ms.
    ``decode_responses`` stays off: stream payloads are bytes and decoding them twice
    costs more than it helps.

    ``socket_timeout=False`` leaves reads unbounded: for hot paths whose every call
    already runs under ``asyncio.timeout`` (redis-py wraps each command in
    ``asyncio.wait_for`` when a socket timeout is set, an extra task per command that
    cost the gateway ~20% of its limiter ask in ``make bench``).
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_seconds,
        socket_timeout=timeout_seconds if socket_timeout else None,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
    )
    # from_pool: the client owns the pool, so ``aclose()`` closes its connections too.
    return aioredis.Redis.from_pool(pool)


async def ensure_consumer_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) if missing; an existing group is fine."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
