"""Redis helpers shared by every service: client creation and stream plumbing.

Failure modes: connection errors surface as ``redis.RedisError`` subclasses; callers
decide the policy (the gateway's event publisher buffers and retries, consumers back
off). Nothing here swallows errors.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


def create_redis(
    url: str, *, timeout_seconds: float = 2.0, max_connections: int = 64
) -> aioredis.Redis:
    """An asyncio Redis client with a bounded pool and socket timeouts.

    ``decode_responses`` stays off: stream payloads are bytes and decoding them twice
    costs more than it helps.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        max_connections=max_connections,
        health_check_interval=30,
    )


async def ensure_consumer_group(client: aioredis.Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) if missing; an existing group is fine."""
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
