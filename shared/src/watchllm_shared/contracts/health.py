"""Service heartbeats in Redis, read by the gateway's ``GET /health``.

Each background service (limiter, cache, analytics) writes its heartbeat every few
seconds with a TTL; an expired heartbeat means the service is down or gone. The
heartbeat also reports the stores only that service talks to (the cache service
reports Qdrant, analytics reports ClickHouse), since the gateway never touches them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
