"""Service heartbeats in Redis, read by the gateway's ``GET /health``.

Each background service (limiter, cache, analytics) writes its heartbeat every few
seconds with a TTL; an expired heartbeat means the service is down or gone. The
heartbeat also reports the stores only that service talks to (the cache service
reports Qdrant, analytics reports ClickHouse), since the gateway never touches them.

Words: a service is ``up`` or ``degraded`` (``status``); a store is ``connected`` or
``disconnected`` (``stores``), as ``/health`` shows them.

Add-only, for rolling deploys: ``stores`` was added next to ``dependencies``, which
says the same with the first version's words (``up``/``down``) and is still written,
so a gateway older than ``stores`` keeps reading new heartbeats; ``store()`` reads
either, so a heartbeat from a replica older than ``stores`` is understood too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

HEARTBEAT_TTL_SECONDS = 15
HEARTBEAT_SERVICES = ("limiter", "cache", "analytics")

StoreStatus = Literal["connected", "disconnected"]
ServiceStatus = Literal["up", "degraded"]
DependencyStatus = Literal["up", "down"]  # the words of ``dependencies`` (first version)


def heartbeat_key(service: str) -> str:
    return f"watchllm:heartbeat:{service}"


class Heartbeat(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str
    instance: str
    at: datetime
    status: ServiceStatus = "up"
    dependencies: dict[str, DependencyStatus] = {}  # for gateways older than ``stores``
    stores: dict[str, StoreStatus] = {}

    def store(self, name: str) -> StoreStatus | None:
        """What the service says of store ``name`` (None: it does not report it)."""
        if name in self.stores:
            return self.stores[name]
        if name in self.dependencies:  # a replica older than ``stores``
            return "connected" if self.dependencies[name] == "up" else "disconnected"
        return None


def heartbeat(
    service: str,
    instance: str,
    status: ServiceStatus = "up",
    stores: Mapping[str, StoreStatus] | None = None,
) -> Heartbeat:
    """This replica's heartbeat now, its stores in both fields (see the module docstring)."""
    stores = dict(stores or {})
    old_words: dict[str, DependencyStatus] = {
        name: "up" if state == "connected" else "down" for name, state in stores.items()
    }
    return Heartbeat(service=service, instance=instance, at=datetime.now(UTC), status=status,
                     dependencies=old_words, stores=stores)  # fmt: skip


async def publish_heartbeat(
    redis: aioredis.Redis,
    service: str,
    instance: str,
    status: ServiceStatus = "up",
    stores: Mapping[str, StoreStatus] | None = None,
) -> None:
    """Write this replica's heartbeat (expires after ``HEARTBEAT_TTL_SECONDS``)."""
    beat = heartbeat(service, instance, status, stores)
    await redis.set(heartbeat_key(service), beat.model_dump_json(), ex=HEARTBEAT_TTL_SECONDS)
