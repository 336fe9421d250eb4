"""Service heartbeats in Redis, read by the gateway's ``GET /health``.

Each background service (limiter, cache, analytics) writes its heartbeat every few
seconds with a TTL; an expired heartbeat means the service is down or gone. The
heartbeat also reports the stores only that service talks to (the cache service
reports Qdrant, analytics reports ClickHouse), since the gateway never touches them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

HEARTBEAT_TTL_SECONDS = 15
HEARTBEAT_SERVICES = ("limiter", "cache", "analytics")

DependencyStatus = Literal["up", "down"]


def heartbeat_key(service: str) -> str:
    return f"watchllm:heartbeat:{service}"


class Heartbeat(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str
    instance: str
    at: datetime
    status: Literal["up", "degraded"] = "up"
    dependencies: dict[str, DependencyStatus] = {}


async def publish_heartbeat(
    redis: aioredis.Redis,
    service: str,
    instance: str,
    status: Literal["up", "degraded"] = "up",
    dependencies: dict[str, DependencyStatus] | None = None,
) -> None:
    """Write this replica's heartbeat (expires after ``HEARTBEAT_TTL_SECONDS``)."""
    beat = Heartbeat(service=service, instance=instance, at=datetime.now(UTC), status=status,
                     dependencies=dependencies or {})  # fmt: skip
    await redis.set(heartbeat_key(service), beat.model_dump_json(), ex=HEARTBEAT_TTL_SECONDS)
