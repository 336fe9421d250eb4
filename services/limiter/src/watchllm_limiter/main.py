"""The limiter service process: library, sync, token charges, alerts (rules, budget
thresholds, webhook deliveries: ``alerts``), heartbeat, trimming the events stream to
what its groups still need (``stream_trim``), HTTP probes.

``create_app(settings)`` builds it; nothing happens at import. Background tasks run
in the lifespan. On shutdown (SIGTERM) the sync and the heartbeat are cancelled (nothing
to finish), and the charger ends after its current round, charged and acknowledged,
within ``STOP_GRACE_SECONDS`` (then it is cancelled: what it held stays pending and is
reclaimed); ``watchllm_shared.stopping`` says why not a plain cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.responses import JSONResponse, Response

from watchllm_limiter.alerts.service import Alerting
from watchllm_limiter.charges import TokenCharger
from watchllm_limiter.library import ensure_library, loaded_version
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_limiter.sync import LimitSync
from watchllm_shared.contracts.health import publish_heartbeat
from watchllm_shared.redis_io import create_redis
from watchllm_shared.stopping import stop_tasks
from watchllm_shared.stream_trim import keep_trimmed
from watchllm_shared.telemetry import active_tracer

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 3.0  # the charger's round: a 1 s XREADGROUP block, then one batch


async def _heartbeat(
    redis: aioredis.Redis, settings: LimiterSettings, metrics: LimiterMetrics, sync: LimitSync
) -> None:
    """Every few seconds: make sure the library is loaded (a Redis restarted without
    persistence comes back empty: then every project's limits are rewritten too), then
    report this replica alive."""
    while True:
        try:
            if await loaded_version(redis) is None:
                log.warning("Redis lost the limiter library: reloading, resyncing limits")
                sync.request_full_sync()
            metrics.library_version.set(await ensure_library(redis))
            await publish_heartbeat(redis, "limiter", settings.limiter_consumer_name)
        except (RedisError, OSError) as exc:
            log.warning("heartbeat skipped, Redis: %s", exc)
        await asyncio.sleep(settings.limiter_heartbeat_seconds)


async def _load_library(redis: aioredis.Redis, metrics: LimiterMetrics) -> None:
    """Load the library, retrying until Redis answers (it may start after us)."""
    while True:
        try:
            metrics.library_version.set(await ensure_library(redis))
            return
        except (RedisError, OSError) as exc:
            log.error("cannot load the limiter library yet: %s", exc)
            await asyncio.sleep(1.0)


def create_app(settings: LimiterSettings | None = None) -> FastAPI:
    settings = settings or LimiterSettings()
    metrics = LimiterMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = create_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=4)
            stack.push_async_callback(pool.close)
            await _load_library(redis, metrics)
            sync = LimitSync(settings.database_url, pool, redis, metrics,
                             settings.limiter_full_sync_seconds)  # fmt: skip
            http = httpx.AsyncClient(timeout=settings.limiter_alert_timeout_seconds)
            stack.push_async_callback(http.aclose)
            alerting = Alerting(redis, pool, http, settings, metrics)
            charger = TokenCharger(redis, metrics, settings, active_tracer("watchllm_limiter"),
                                   after_charge=alerting.after_charge)  # fmt: skip
            stopping = asyncio.Event()
            charging = asyncio.create_task(charger.run(stopping), name="token-charger")
            others = [
                *alerting.start(stopping),
                asyncio.create_task(sync.run(), name="limit-sync"),
                asyncio.create_task(_heartbeat(redis, settings, metrics, sync), name="heartbeat"),
            ]
            if settings.events_stream_groups:  # processed events go (``stream_trim``)
                trim = keep_trimmed(redis, settings.events_stream, settings.events_stream_groups,
                                    "events stream")  # fmt: skip
                others.append(asyncio.create_task(trim, name="events-trim"))
            app.state.redis, app.state.pool, app.state.sync = redis, pool, sync
            try:
                yield
            finally:
                stopping.set()
                await stop_tasks(others, 0)
                await stop_tasks([charging], STOP_GRACE_SECONDS)

    # No /openapi.json, /docs or /redoc: nothing here is for browsing (issue 22).
    app = FastAPI(
        title="WatchLLM limiter", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )

    @app.get("/livez")
    async def livez() -> Response:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        ready = app.state.sync.last_full_sync is not None
        return JSONResponse({"status": "ready" if ready else "syncing"},
                            status_code=200 if ready else 503)  # fmt: skip

    @app.get("/health")
    async def health() -> Response:
        """Redis (and the library version in it), Postgres, and the last full sync."""
        redis_ok, version, database_ok = True, None, True
        try:
            async with asyncio.timeout(1.0):
                version = await loaded_version(app.state.redis)
        except (RedisError, OSError, TimeoutError):
            redis_ok = False
        try:
            async with asyncio.timeout(1.0):
                await app.state.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            database_ok = False
        synced = app.state.sync.last_full_sync is not None
        healthy = redis_ok and database_ok and version is not None and synced
        body = {
            "status": "healthy" if healthy else "degraded",
            "services": {"redis": "connected" if redis_ok else "disconnected",
                         "database": "connected" if database_ok else "disconnected"},
            "library_version": version,
            "limits_synced": synced,
        }  # fmt: skip
        return JSONResponse(body, status_code=200 if healthy else 503)

    app.state.metrics_registry = metrics.registry  # served apart: ``__main__``
    return app
