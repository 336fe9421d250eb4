"""Everything one gateway process holds: built in the lifespan, torn down in order.

Kept on ``app.state.runtime``; handlers reach it through ``deps``. Nothing here lives
in a module global, so tests can build as many apps as they like.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from watchllm_gateway.auth import KeyAuthenticator
from watchllm_gateway.body_log import BODY_BUFFER_SIZE, BodyLog
from watchllm_gateway.cache_client import CacheClient
from watchllm_gateway.cache_flow import CacheSupport
from watchllm_gateway.concurrency import Concurrency
from watchllm_gateway.events import StreamPublisher, close_all
from watchllm_gateway.health import HealthChecker
from watchllm_gateway.intake import BodyBudget, Intake
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.pricing import PriceTable
from watchllm_gateway.proxy import Proxy
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_gateway.routing import ModelRouter, Routing
from watchllm_gateway.settings import GatewaySettings
from watchllm_gateway.state_report import StateReporter
from watchllm_gateway.upstream import UpstreamClient, create_http_session
from watchllm_shared.accounts import AccountStore
from watchllm_shared.contracts.cache import CACHE_STORE_MAXLEN, CACHE_STORE_STREAM
from watchllm_shared.contracts.request_bodies import REQUEST_BODIES_MAXLEN, REQUEST_BODIES_STREAM
from watchllm_shared.contracts.streams import REQUESTS_COMPLETED_MAXLEN
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands
from watchllm_shared.telemetry import active_tracer

_POOL_CLOSE_SECONDS = 0.3


@dataclass(frozen=True, slots=True)
class GatewayRuntime:
    settings: GatewaySettings
    metrics: GatewayMetrics
    router: ModelRouter
    proxy: Proxy
    health: HealthChecker
    routing: Routing | None = None  # deployments' health, for /health


async def open_runtime(
    settings: GatewaySettings, metrics: GatewayMetrics, stack: AsyncExitStack
) -> GatewayRuntime:
    """Connect to Redis, Postgres and the upstreams; ``stack`` closes them in reverse."""
    tracer = active_tracer("watchllm_gateway")  # None unless tracing is on
    # No socket timeout: every gateway call to Redis runs under its own asyncio.timeout.
    redis: aioredis.Redis = create_redis(settings.redis_url, socket_timeout=False)
    stack.push_async_callback(redis.aclose)
    # The hot-path commands (limiter ask, cache GETs and asks, event XADDs); closed
    # after the publishers flush.
    commands = PackedCommands(redis)
    stack.push_async_callback(commands.aclose)
    # min_size=0: the gateway starts (and answers /livez) even while Postgres is down.
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.database_url, min_size=0, max_size=10, command_timeout=5, timeout=5
    )
    stack.push_async_callback(_close_pool, pool)
    http = create_http_session(settings)
    stack.push_async_callback(http.close)
    events = StreamPublisher(
        commands, metrics.events, settings.event_buffer_size, settings.events_stream,
        REQUESTS_COMPLETED_MAXLEN,
    )  # fmt: skip
    events.start()
    bodies = StreamPublisher(  # projects that log bodies (``body_log``)
        commands, metrics.request_bodies, BODY_BUFFER_SIZE, REQUEST_BODIES_STREAM,
        REQUEST_BODIES_MAXLEN,
    )  # fmt: skip
    bodies.start()
    publishers = [events, bodies]
    # Closed before Redis (flushing while it is open), all under one deadline.
    stack.push_async_callback(close_all, publishers, settings.shutdown_split()[1])
    cache: CacheSupport | None = None
    cache_parts: tuple[CacheClient, StreamPublisher] | None = None
    if settings.cache_enabled:
        key_secret = settings.cache_key()  # MissingSecret: no cache without it
        stores = StreamPublisher(
            commands, metrics.cache_stores, settings.event_buffer_size, CACHE_STORE_STREAM,
            CACHE_STORE_MAXLEN,
        )  # fmt: skip
        stores.start()
        publishers.append(stores)
        client = CacheClient(redis, commands, metrics, settings.instance_name,
                             settings.cache_timeout_seconds, tracer)  # fmt: skip
        client.start()
        stack.push_async_callback(client.close)
        cache = CacheSupport(client, stores, key_secret)
        cache_parts = (client, stores)
    # Requests in flight: this replica's pool share, and slots in Redis renewed by lease.
    concurrency = Concurrency(
        commands, settings.project_share(), settings.concurrency_lease_seconds, metrics
    )
    concurrency.start()
    stack.push_async_callback(concurrency.close)  # before the Redis commands close
    limiter = (
        RateLimiter(
            commands,
            metrics,
            settings.limiter_timeout_seconds,
            settings.limiter_failure_policy,
            tracer,
            settings.limiter_write_refused_policy,
            concurrency=concurrency,
            default_concurrency=settings.default_project_concurrency(),
        )
        if settings.limiter_enabled
        else None
    )
    routing = Routing.from_settings(
        settings, UpstreamClient(http, metrics), metrics.registry, metrics.upstream_retries,
        commands=commands,
    )  # fmt: skip
    router = routing.router
    if routing.dispatcher.capacity is not None:  # tokens charged to deployments: written
        stack.push_async_callback(routing.dispatcher.capacity.settled)  # before Redis closes
    stack.callback(routing.watch_reload_signal())  # SIGHUP: read the routes again
    proxy = Proxy(
        auth=KeyAuthenticator(
            AccountStore(pool, actor="gateway"),
            metrics,
            ttl=settings.key_cache_ttl_seconds,
            stale=settings.key_cache_stale_seconds,
            timeout=settings.key_lookup_timeout_seconds,
        ),
        router=router,
        dispatcher=routing.dispatcher,
        prices=PriceTable.load(settings.prices, settings.price_table_path),
        default_models=settings.default_allowed_models,
        events=events,
        cache=cache,
        metrics=metrics,
        intake=Intake(
            settings.max_body_bytes,
            settings.body_read_timeout_seconds,
            BodyBudget(settings.max_body_bytes_in_flight),
        ),
        limiter=limiter,
        log_bodies=settings.log_bodies,
        tracer=tracer,
        concurrency=concurrency,
        bodies=BodyLog(bodies),
    )
    health = HealthChecker(pool, redis, settings.health_check_timeout_seconds)
    reporter = StateReporter(redis, settings.instance_name, settings.state_report_seconds,
                             events, limiter, cache_parts)  # fmt: skip
    reporter.start()
    stack.push_async_callback(reporter.close)  # before the publishers flush: withdrawn
    return GatewayRuntime(settings, metrics, router, proxy, health, routing)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully, unless Postgres does not answer: then cut the connections (a
    graceful close waits for the server, and the shutdown has a deadline)."""
    try:
        async with asyncio.timeout(_POOL_CLOSE_SECONDS):
            await pool.close()
    except TimeoutError:
        pool.terminate()
