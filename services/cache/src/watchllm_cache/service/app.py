"""The cache service process: model and index loaded once, three consumers, probes.

``create_app(settings)`` builds it; nothing happens at import. The model and the
index are opened in the lifespan (seconds, once), then the ask server, the store
consumer and the command consumer run as tasks until shutdown. ``/readyz`` answers
only once the model is loaded, so Kubernetes sends no traffic to a replica still
warming up.

A background task trims the ask stream to the asks not read yet (``stream_trim``): the
ask server acknowledges each ask as it reads it.

Shutdown (SIGTERM): the heartbeat and the trimming are cancelled; the three consumers
end after their current round (an XREADGROUP block of ≤ 1 s, then what it read, handled
and acknowledged), within ``STOP_GRACE_SECONDS``, then are cancelled (what they held stays
pending and is reclaimed); ``watchllm_shared.stopping`` says why not a plain
cancellation. Then the index is closed (qdrant-edge flushes).

Embedded mode: qdrant-edge lets one process open its path, so run one cache replica
per path; to scale out, point every replica at a Qdrant server (``QDRANT_URL``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.exceptions import RedisError
from starlette.responses import JSONResponse, Response

from watchllm_cache.embedding import DIMENSIONS, Embedder
from watchllm_cache.index import open_index
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.service.asks import AskServer
from watchllm_cache.service.commands import CommandConsumer
from watchllm_cache.service.metrics import CacheServiceMetrics
from watchllm_cache.service.settings import CacheServiceSettings
from watchllm_cache.service.stores import StoreConsumer
from watchllm_shared.contracts.cache import SEMANTIC_ASK_GROUP, SEMANTIC_ASK_STREAM
from watchllm_shared.contracts.health import publish_heartbeat
from watchllm_shared.heap import freeze_startup_heap
from watchllm_shared.redis_io import create_redis
from watchllm_shared.stopping import stop_tasks
from watchllm_shared.stream_trim import keep_trimmed
from watchllm_shared.telemetry import active_tracer

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0  # a round: a 1 s block, then up to 64 stores (embedding each)


async def _heartbeat(
    redis: aioredis.Redis, cache: SemanticCache, settings: CacheServiceSettings
) -> None:
    """Report this replica alive, with Qdrant as the index last answered."""
    while True:
        index_up = await cache.index_healthy()
        try:
            await publish_heartbeat(
                redis,
                "cache",
                settings.cache_consumer_name,
                "up" if index_up else "degraded",
                {"qdrant": "connected" if index_up else "disconnected"},
            )
        except (RedisError, OSError) as exc:
            log.warning("heartbeat skipped, Redis: %s", exc)
        await asyncio.sleep(settings.cache_heartbeat_seconds)


def create_app(settings: CacheServiceSettings | None = None) -> FastAPI:
    settings = settings or CacheServiceSettings()
    metrics = CacheServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = create_redis(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            embedder = Embedder(settings.embedding_model_path, settings.embedding_model_name,
                                settings.embedding_threads)  # fmt: skip
            index = open_index(settings, DIMENSIONS)
            cache = SemanticCache(embedder, index, settings)
            stack.push_async_callback(cache.close)
            name = settings.cache_consumer_name
            tracer = active_tracer("watchllm_cache")  # None unless tracing is on
            freeze_startup_heap()  # the model and index: full collections would walk them
            stopping = asyncio.Event()
            stores = StoreConsumer(redis, cache, metrics, name, settings.cache_reclaim_idle_ms,
                                   settings.cache_max_deliveries, tracer)  # fmt: skip
            consumers = [
                asyncio.create_task(AskServer(redis, cache, metrics, name, tracer,
                                              workers=settings.cache_ask_workers,
                                              per_project=settings.cache_ask_queue_per_project)
                                    .run(stopping), name="semantic-asks"),
                asyncio.create_task(stores.run(stopping), name="cache-stores"),
                asyncio.create_task(CommandConsumer(redis, cache, metrics, name)
                                    .run(stopping), name="cache-commands"),
            ]  # fmt: skip
            background = [
                asyncio.create_task(_heartbeat(redis, cache, settings), name="heartbeat"),
                # Asks are acknowledged when read: once read, they go (``stream_trim``).
                asyncio.create_task(keep_trimmed(redis, SEMANTIC_ASK_STREAM, (SEMANTIC_ASK_GROUP,),
                                                 "semantic asks"), name="asks-trim"),
            ]  # fmt: skip
            app.state.ready = True
            try:
                yield
            finally:
                stopping.set()
                await stop_tasks(background, 0)
                await stop_tasks(consumers, STOP_GRACE_SECONDS)

    # No /openapi.json, /docs or /redoc: nothing here is for browsing (issue 22).
    app = FastAPI(
        title="WatchLLM cache", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.ready = False

    @app.get("/livez")
    async def livez() -> Response:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> Response:
        ready = bool(app.state.ready)
        return JSONResponse({"status": "ready" if ready else "loading"},
                            status_code=200 if ready else 503)  # fmt: skip

    app.state.metrics_registry = metrics.registry  # served apart: ``serve``
    return app
