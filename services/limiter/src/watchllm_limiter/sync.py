"""Keeping every project's limits in Redis in step with Postgres.

- On start and every ``limiter_full_sync_seconds``: every project is written.
- On ``NOTIFY watchllm_limits_changed`` (sent by the accounts module in the same
  transaction as the change): that project is rewritten at once, so a change applies
  within a second on every gateway replica.
- A project's hash is replaced atomically (MULTI: DEL + HSET), so the library never
  sees half of an update. Deleted projects' hashes simply stop being refreshed.

Failure modes: Postgres or Redis down → the sync is retried with backoff and counted
in ``watchllm_limiter_sync_errors_total``; the limits already in Redis keep applying.
A lost LISTEN connection is reopened and followed by a full sync (notifications sent
meanwhile are lost, the full sync covers them). Only the loss of the connection in use
counts: asyncpg also runs termination listeners on a deliberate ``close()``, so the
listener is removed before closing, and a connection-lost marker that finds the current
connection open (queued by an earlier one) is ignored. A failed sync therefore costs one
reconnect, not a reconnect every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from watchllm_limiter.metrics import LimiterMetrics
from watchllm_shared.accounts import LimitStore, NotFoundError, ProjectLimits
from watchllm_shared.contracts.limits import LIMITS_CHANGED_CHANNEL, limits_key

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0
_CONNECTION_LOST = uuid.UUID(int=0)  # queued when the LISTEN connection dies
_FULL_SYNC = uuid.UUID(int=1)  # queued when Redis came back empty


async def write_limits(redis: aioredis.Redis, limits: ProjectLimits) -> None:
    key = limits_key(limits.project_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=limits.as_hash())  # type: ignore[arg-type]
        await pipe.execute()


class LimitSync:
    def __init__(
        self,
        database_url: str,
        pool: asyncpg.Pool,
        redis: aioredis.Redis,
        metrics: LimiterMetrics,
        full_sync_seconds: float,
    ) -> None:
        self._database_url = database_url
        self._store = LimitStore(pool, actor="limiter")
        self._redis = redis
        self._metrics = metrics
        self._full_sync_seconds = full_sync_seconds
        self._changed: asyncio.Queue[uuid.UUID] = asyncio.Queue()
        self.last_full_sync: float | None = None

    async def sync_project(self, project_id: uuid.UUID, trigger: str) -> None:
        started = time.perf_counter()
        try:
            limits = await self._store.project_limits(project_id)
        except NotFoundError:
            await self._redis.delete(limits_key(project_id))
            return
        await write_limits(self._redis, limits)
        self._metrics.syncs.labels(trigger).inc()
        self._metrics.sync_latency.observe(time.perf_counter() - started)

    async def sync_all(self) -> int:
        ids = await self._store.project_ids()
        for project_id in ids:
            await self.sync_project(project_id, "full")
        self.last_full_sync = time.monotonic()
        return len(ids)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self._changed.put_nowait(uuid.UUID(payload))

    def request_full_sync(self) -> None:
        """Rewrite every project soon (Redis lost its data, e.g. restarted empty)."""
        self._changed.put_nowait(_FULL_SYNC)

    def _on_terminate(self, conn: Any) -> None:
        self._changed.put_nowait(_CONNECTION_LOST)

    async def _next_change(self, listener: asyncpg.Connection) -> uuid.UUID:
        """The next project to sync (or ``_FULL_SYNC``); raises if ``listener`` died."""
        while True:
            project_id = await self._changed.get()
            if listener.is_closed():
                raise OSError("the LISTEN connection to Postgres was lost")
            if project_id != _CONNECTION_LOST:
                return project_id
            # The connection in use is open: the marker was left by an earlier one.

    async def run(self) -> None:
        """Listen and sync until cancelled; reconnects by itself."""
        while True:
            try:
                await self._listen_and_sync()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RedisError) as exc:
                self._metrics.sync_errors.inc()
                log.error("limit sync failing, retrying in %.0f s: %s", _RETRY_SECONDS, exc)
                await asyncio.sleep(_RETRY_SECONDS)

    async def _listen_and_sync(self) -> None:
        listener: asyncpg.Connection = await asyncpg.connect(self._database_url)
        listener.add_termination_listener(self._on_terminate)
        try:
            await listener.add_listener(LIMITS_CHANGED_CHANNEL, self._on_notify)
            await self.sync_all()  # after LISTEN: no change can fall between the two
            while True:
                try:
                    async with asyncio.timeout(self._next_full_sync_in()):
                        project_id = await self._next_change(listener)
                except TimeoutError:
                    await self.sync_all()
                    continue
                if project_id == _FULL_SYNC:
                    await self.sync_all()
                else:
                    await self.sync_project(project_id, "notify")
        finally:
            # close() runs termination listeners too: a deliberate close is no loss.
            listener.remove_termination_listener(self._on_terminate)
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await listener.close(timeout=1)

    def _next_full_sync_in(self) -> float:
        if self.last_full_sync is None:
            return 0.0
        return max(0.0, self.last_full_sync + self._full_sync_seconds - time.monotonic())
