"""What the service knows about its own health, and the heartbeat it publishes.

ClickHouse counts as "connected" when it answers a ping *and* the last batch write did
not fail (a missing table answers pings but takes no rows). Stores are "connected" or
"disconnected", as in the gateway's ``/health``. The heartbeat goes to
``heartbeat_key("analytics")`` with a TTL, so the gateway's ``/health`` shows the
service as down when it stops writing it, and reports ``clickhouse`` from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from watchllm_analytics.stream_group import GroupLag
from watchllm_shared.contracts.health import StoreStatus
from watchllm_shared.contracts.health import publish_heartbeat as shared_heartbeat

log = logging.getLogger(__name__)


@dataclass
class HealthState:
    clickhouse_reachable: bool = False
    writes_failing: bool = False
    last_write_error: str | None = None
    schema_ready: bool = False
    redis_up: bool = False
    lag: GroupLag | None = None
    dead_letters: int | None = None

    @property
    def clickhouse(self) -> StoreStatus:
        if self.clickhouse_reachable and not self.writes_failing:
            return "connected"
        return "disconnected"

    def write_failed(self, error: str) -> None:
        if not self.writes_failing:
            log.error("cannot write to ClickHouse, keeping events pending: %s", error[:500])
        self.writes_failing = True
        self.last_write_error = error

    def write_succeeded(self) -> None:
        if self.writes_failing:
            log.warning("writing to ClickHouse again")
        self.writes_failing = False
        self.clickhouse_reachable = True

    @property
    def ready(self) -> bool:
        return self.schema_ready and self.clickhouse == "connected" and self.redis_up

    def report(self, group: str) -> dict[str, Any]:
        status = "healthy" if self.ready else ("unhealthy" if not self.schema_ready else "degraded")
        lag = self.lag
        return {
            "status": status,
            "clickhouse": self.clickhouse,
            "redis": "connected" if self.redis_up else "disconnected",
            "last_write_error": self.last_write_error if self.writes_failing else None,
            "consumer_group": {
                "name": group,
                "lag": lag.undelivered if lag else None,
                "pending": lag.pending if lag else None,
                "dead_letters": self.dead_letters,
            },
        }


async def publish_heartbeat(redis: aioredis.Redis, instance: str, state: HealthState) -> None:
    await shared_heartbeat(redis, "analytics", instance, "up" if state.ready else "degraded",
                           {"clickhouse": state.clickhouse})  # fmt: skip
