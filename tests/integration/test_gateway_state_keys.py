"""The gateways' state reports in the real Redis: listed while fresh, gone once withdrawn
or expired; and the cache's store backlog as the Health page reads it (XINFO GROUPS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from tests.conftest import unique
from watchllm_dashboard.data.gateway_view import StoreBacklog, store_backlog
from watchllm_shared.contracts.gateway_state import (
    GATEWAY_STATES_KEY,
    GatewayCounts,
    GatewayState,
    gateway_state_key,
    publish_gateway_state,
    read_gateway_states,
    withdraw_gateway_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


def _state(instance: str, fail_opens: int = 0) -> GatewayState:
    now = datetime.now(UTC)
    return GatewayState(instance=instance, at=now, started_at=now,
                        recent=GatewayCounts(limiter_failed_open=fail_opens))  # fmt: skip


async def test_states_are_listed_while_fresh_and_gone_when_withdrawn_or_expired(
    client: aioredis.Redis,
) -> None:
    one, two, three = unique("gw"), unique("gw"), unique("gw")
    for name, fail_opens in ((one, 1), (two, 2), (three, 3)):
        await publish_gateway_state(client, _state(name, fail_opens))
    assert 0 < await client.ttl(gateway_state_key(one)) <= 15

    await withdraw_gateway_state(client, two)
    await client.delete(gateway_state_key(three))  # as if its TTL ran out
    states = await read_gateway_states(client)
    mine = {s.instance: s for s in states if s.instance in (one, two, three)}
    assert list(mine) == [one] and mine[one].recent.limiter_failed_open == 1
    await client.zrem(GATEWAY_STATES_KEY, one, three)
    await client.delete(gateway_state_key(one))


async def test_store_backlog_counts_pending_and_unread_entries(client: aioredis.Redis) -> None:
    stream = unique("test.stores")
    assert await store_backlog(client, stream, "cache") is None  # no stream yet
    await client.xgroup_create(stream, "cache", id="0", mkstream=True)
    for n in range(5):
        await client.xadd(stream, {"data": str(n)})
    await client.xreadgroup("cache", "c1", {stream: ">"}, count=2)  # delivered, not acked
    try:
        assert await store_backlog(client, stream, "cache") == StoreBacklog(pending=2, lag=3)
        assert await store_backlog(client, stream, "other") is None
    finally:
        await client.delete(stream)


async def test_store_backlog_ignores_the_lag_entries_trimmed_before_delivery_leave(
    client: aioredis.Redis,
) -> None:
    """Redis counts entries trimmed before a group read them as added and never as read:
    its ``lag`` then says "unread" for good, though the cache service read everything."""
    stream = unique("test.stores")
    await client.xgroup_create(stream, "cache", id="0", mkstream=True)
    try:
        await client.xadd(stream, {"data": "read"})
        await client.xreadgroup("cache", "c1", {stream: ">"}, count=100)
        for n in range(20):  # written while no cache service reads: most are trimmed
            await client.xadd(stream, {"data": str(n)}, maxlen=3, approximate=False)
        await client.xreadgroup("cache", "c1", {stream: ">"}, count=100)
        (group,) = await client.xinfo_groups(stream)
        assert group["lag"] in (17, 0)  # Redis 7.0 (CI's): 17, stale; Valkey 8: 0
        assert await store_backlog(client, stream, "cache") == StoreBacklog(pending=4, lag=0)
        await client.xadd(stream, {"data": "new"}, maxlen=3, approximate=False)
        backlog = await store_backlog(client, stream, "cache")
        # One unread; Redis 7.0's stale lag, capped by the stream's length, says 3.
        assert backlog is not None and backlog.pending == 4 and backlog.lag in (1, 3)
    finally:
        await client.delete(stream)
