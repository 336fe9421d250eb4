"""``GET /health``: what the gateway reaches itself, and what the services report::

    {"status": "healthy", "mode": "self_hosted",
     "services": {"database": "connected", "redis": "connected", "qdrant": "connected",
                  "clickhouse": "connected", "limiter": "up", "cache": "up",
                  "analytics": "up"},
     "processes": {...}}

- Stores say ``connected`` or ``disconnected``. ``database`` (Postgres) and ``redis``
  are checked here (``SELECT 1``, ``PING``), each within ``health_check_timeout_seconds``
  (1 s). ``qdrant`` and ``clickhouse`` are as the cache and analytics services report
  them in their heartbeats (the gateway never talks to them), and ``unknown`` while that
  service has no fresh heartbeat: not running, nobody can say.
- Services (``limiter``, ``cache``, ``analytics``) say ``up`` (a fresh heartbeat, all
  well), ``degraded`` (a fresh heartbeat, but the service reports a problem: its store
  disconnected, its schema not ready) or ``down`` (no heartbeat for 15 s).
- ``status``: ``unhealthy`` (HTTP 503) when the database or Redis is disconnected (no
  request can be served); ``degraded`` when anything else is not connected or up, or a
  process under ``watchllm up`` was given up (requests are served, without that part);
  ``healthy`` otherwise.
- Under ``watchllm up``, ``"processes"`` adds its supervisor's report (each process's
  state, restarts and last exit; ``contracts/supervision.py``); a process left down after
  crashing too often makes the status "degraded" even while a sibling replica keeps the
  service's heartbeat fresh.

Every check answers within the timeout, also while a store hangs (paused, partitioned).
The database is asked by one ``SELECT 1`` at a time, in a task of its own that callers
wait for at most the timeout: awaited directly, a query cut off by the timeout first
waits for asyncpg to cancel it on the server, over a new connection to the hung
postmaster (a wait asyncpg shields from cancellation, up to the pool's 5 s command
timeout), and ``/health`` took 6 s with Postgres SIGSTOPped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from watchllm_shared.contracts.health import (
    HEARTBEAT_SERVICES,
    Heartbeat,
    StoreStatus,
    heartbeat_key,
)
from watchllm_shared.contracts.supervision import SUPERVISOR_KEY, SupervisorReport

_REPORTED_BY = {"qdrant": "cache", "clickhouse": "analytics"}
_ALL_WELL = ("connected", "up")


def _store(connected: bool) -> StoreStatus:
    return "connected" if connected else "disconnected"


class HealthChecker:
    def __init__(self, pool: asyncpg.Pool, redis: aioredis.Redis, timeout: float) -> None:
        self._pool = pool
        self._redis = redis
        self._timeout = timeout
        self._select: asyncio.Task[bool] | None = None  # the database check in flight

    async def database_connected(self) -> bool:
        """``SELECT 1`` answered within the timeout; callers share one query at a time
        and wait for it at most the timeout (see the module docstring)."""
        select = self._select
        if select is None:
            select = self._select = asyncio.get_running_loop().create_task(self._select_one())
            select.add_done_callback(self._select_done)
        done, _ = await asyncio.wait({select}, timeout=self._timeout)
        return bool(done) and select.result()

    async def _select_one(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return False  # maybe only after asyncpg cancelled it on the server: nobody waits
        return True

    def _select_done(self, task: asyncio.Task[bool]) -> None:
        if self._select is task:
            self._select = None

    async def redis_connected(self) -> bool:
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
            self.database_connected(), self.redis_connected(), self._heartbeats(),
            self._supervisor(),
        )  # fmt: skip
        services: dict[str, str] = {"database": _store(database), "redis": _store(redis_ok)}
        for store, owner in _REPORTED_BY.items():
            beat = beats.get(owner)
            services[store] = (beat.store(store) if beat else None) or "unknown"
        for service in HEARTBEAT_SERVICES:
            services[service] = beats[service].status if service in beats else "down"
        given_up = supervisor is not None and supervisor.given_up
        if not (database and redis_ok):
            status = "unhealthy"
        elif all(v in _ALL_WELL for v in services.values()) and not given_up:
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
