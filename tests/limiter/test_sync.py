"""The limit sync's LISTEN connection against real Postgres and Redis: a failed sync
costs one reconnect (not a reconnect every second), and a LISTEN connection killed by
the server is reopened, resynced and listening again."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import unique
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.sync import LimitSync
from watchllm_shared.accounts import AccountStore, LimitStore
from watchllm_shared.contracts.limits import limits_key

pytestmark = pytest.mark.integration

_LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'"
)


class Running:
    def __init__(self, sync: LimitSync, metrics: LimiterMetrics) -> None:
        self.sync = sync
        self.metrics = metrics

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def errors(self) -> float:
        return self.value("watchllm_limiter_sync_errors_total")

    def full_syncs(self) -> float:
        return self.value("watchllm_limiter_syncs_total", trigger="full")

    def notify_syncs(self) -> float:
        return self.value("watchllm_limiter_syncs_total", trigger="notify")


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait until ``condition()`` holds. The deadline only bounds a failure: what is
    awaited happens in about a second (a retry) or at once, while the alternative is
    never (or the full sync, an hour away)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within 30 s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def running(
    redis: aioredis.Redis, account_store: AccountStore, database_url: str
) -> AsyncIterator[Running]:
    """A LimitSync running in this loop, its first full sync done."""
    await account_store.create_project(unique("sync"))
    metrics = LimiterMetrics()
    sync = LimitSync(database_url, account_store.pool, redis, metrics, full_sync_seconds=3600)
    task = asyncio.create_task(sync.run())
    try:
        await until(lambda: sync.last_full_sync is not None, "first full sync")
        yield Running(sync, metrics)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_failed_sync_costs_one_reconnect_not_one_a_second(running: Running) -> None:
    real = running.sync.sync_project
    failures = 0

    async def fails_once(project_id: uuid.UUID, trigger: str) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RedisConnectionError("simulated Redis blip")
        await real(project_id, trigger)

    running.sync.sync_project = fails_once  # type: ignore[method-assign]
    last_pass = running.sync.last_full_sync
    running.sync.request_full_sync()
    await until(lambda: running.errors() >= 1, "the injected failure")
    # The retry (after 1 s) reconnects and syncs everything once; then all is quiet. The
    # pass is over when it stamps ``last_full_sync`` (it writes every project of the
    # session's database first: a counter that moved says only that it began).
    await until(
        lambda: running.sync.last_full_sync != last_pass, "the full sync after reconnecting"
    )
    settled = (running.errors(), running.full_syncs())
    await asyncio.sleep(2.5)
    assert (running.errors(), running.full_syncs()) == settled, "still reconnecting"
    assert running.errors() == 1


async def test_a_killed_listen_connection_is_reopened_and_notifications_apply_again(
    running: Running, account_store: AccountStore, redis: aioredis.Redis
) -> None:
    pool = account_store.pool
    listeners = [row["pid"] for row in await pool.fetch(_LISTENERS)]
    assert len(listeners) == 1, f"expected one LISTEN connection, found {listeners}"
    synced_at = running.sync.last_full_sync
    assert await pool.fetchval("SELECT pg_terminate_backend($1)", listeners[0])
    await until(lambda: running.errors() == 1, "the lost connection noticed")
    await until(lambda: running.sync.last_full_sync != synced_at, "the resync")
    reopened = [row["pid"] for row in await pool.fetch(_LISTENERS)]
    assert len(reopened) == 1 and reopened != listeners
    # A change made now reaches Redis through the new connection's NOTIFY (the next
    # full sync is an hour away).
    name = unique("notified")
    project = await account_store.create_project(name)
    await LimitStore(pool).set_project_limits(name, rpm=4321)
    deadline = time.monotonic() + 30
    while await redis.hget(limits_key(project.id), "rpm") != b"4321":
        assert time.monotonic() < deadline, "the NOTIFY after the reconnect was not applied"
        await asyncio.sleep(0.02)
    assert running.notify_syncs() >= 1
    await asyncio.sleep(1.5)
    assert running.errors() == 1, "one kill, more than one reconnect"
