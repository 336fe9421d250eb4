"""``GET /health``: real checks of what the gateway uses, plus service heartbeats.

- database, redis: checked directly (``SELECT 1``, ``PING``) within a deadline;
- limiter, cache, analytics: "up" while their heartbeat is fresh, else "down";
- qdrant, clickhouse: as reported by the cache and analytics heartbeats ("unknown"
  when that service is not running).

Overall: "unhealthy" when the database or Redis is down (no request can be served),
"degraded" when anything else is not up (requests are served, without that part),
"healthy" otherwise.

Under ``watchllm up``, ``"processes"`` adds its supervisor's report (each process's
state, restarts and last exit; ``contracts/supervision.py``); a process left down after
crashing too often makes the status "degraded" even while a sibling replica keeps the
service's heartbeat fresh.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_shared.contracts.health import HEARTBEAT_SERVICES, Heartbeat, heartbeat_key
from watchllm_shared.contracts.supervision import SUPERVISOR_KEY, SupervisorReport

_REPORTED_BY = {"qdrant": "cache", "clickhouse": "analytics"}


class HealthChecker:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, timeout: float) -> None:
        self._pool = pool
        self._redis = redis
        self._timeout = timeout

    async def database_up(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False
        return True

    async def redis_up(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    async def _heartbeats(self) -> dict[str, Heartbeat]:
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.mget([heartbeat_key(s) for s in HEARTBEAT_SERVICES])
        except (RedisError, OSError, TimeoutError):
            return {}
        beats: dict[str, Heartbeat] = {}
        for service, value in zip(HEARTBEAT_SERVICES, raw, strict=True):
            if value is None:
                continue
            try:
                beats[service] = Heartbeat.model_validate_json(value)
            except ValidationError:
                continue
        return beats

    async def _supervisor(self) -> SupervisorReport | None:
        """``watchllm up``'s report, if this stack runs under it (else ``None``)."""
        try:
            async with asyncio.timeout(self._timeout):
                raw = await self._redis.get(SUPERVISOR_KEY)
        except (RedisError, OSError, TimeoutError):
            return None
        if raw is None:
            return None
        try:
            return SupervisorReport.model_validate_json(raw)
        except ValidationError:
            return None

    async def report(self) -> dict[str, Any]:
        database, redis_ok, beats, supervisor = await asyncio.gather(
            self.database_up(), self.redis_up(), self._heartbeats(), self._supervisor()
        )
        services: dict[str, str] = {
            "database": "up" if database else "down",
            "redis": "up" if redis_ok else "down",
        }
        for store, owner in _REPORTED_BY.items():
            beat = beats.get(owner)
            services[store] = beat.dependencies.get(store, "unknown") if beat else "unknown"
        for service in HEARTBEAT_SERVICES:
            services[service] = beats[service].status if service in beats else "down"
        if not (database and redis_ok):
            status = "unhealthy"
        elif all(v == "up" for v in services.values()) and not (supervisor and supervisor.given_up):
            status = "healthy"
        else:
            status = "degraded"
        report: dict[str, Any] = {"status": status, "mode": "self_hosted", "services": services}
        if supervisor is not None:
            report["processes"] = {
                name: process.model_dump(mode="json", exclude={"log"})
                for name, process in supervisor.processes.items()
            }
        return report
