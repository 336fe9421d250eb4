"""The alert conditions the limiter checks besides budgets, each against real Redis and
rules in real Postgres: a project's error rate above its rule's bar over its window
(counted from the charger's events, a controlled clock), a dead-letter stream growing,
a gateway replica failing open on the limiter; each raised once per episode or hour."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.conftest import unique
from tests.limiter.test_token_charger import event
from watchllm_limiter.alerts.error_rate import MINUTE_MS, ErrorRateAlerts
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_limiter.alerts.watch import Watcher
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts.alerts import AlertRule, AlertStore
from watchllm_shared.contracts import RequestStatus
from watchllm_shared.contracts.alerts import Alert, AlertKind
from watchllm_shared.contracts.gateway_state import (
    GatewayCounts,
    GatewayState,
    publish_gateway_state,
    withdraw_gateway_state,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def rule_on(pool: asyncpg.Pool, kind: AlertKind, **options: Any) -> AlertRule:
    name = unique("conditions")
    await AccountStore(pool, actor="tests").create_project(name, Plan.PRO)
    return await AlertStore(pool, actor="tests").add_rule(
        "https://hooks.example.com/x", [kind], project_name=name, **options
    )


async def queued(redis: aioredis.Redis, stream: str, rule: AlertRule) -> list[Alert]:
    entries: Any = await redis.xrange(stream)
    alerts = [Alert.from_stream_fields(fields) for _, fields in entries]
    return [a for a in alerts if a.rule_id == rule.id]


async def test_an_error_rate_above_the_bar_is_raised_once_per_episode(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    rule = await rule_on(pool, AlertKind.ERROR_RATE, error_rate_percent=Decimal(20),
                         error_rate_minutes=5)  # fmt: skip
    assert rule.project_id is not None
    rules = RuleCache(pool, 60)
    await rules.refresh()
    stream = f"test.alerts.{uuid.uuid4().hex}"
    now = {"ms": int(datetime(2031, 5, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)}

    async def clock() -> int:
        return now["ms"]

    rates = ErrorRateAlerts(redis, rules, stream, clock=clock)
    ok = event(rule.project_id, uuid.uuid4(), 1)
    failed = ok.model_copy(update={"status": RequestStatus.UPSTREAM_ERROR, "http_status": 502})
    refused = ok.model_copy(update={"status": RequestStatus.RATE_LIMITED, "http_status": 429})
    await rates.count([ok] * 7 + [refused] * 3 + [failed] * 2)  # 2 of 12: 16.7 %
    assert await rates.evaluate() == 0
    now["ms"] += 2 * MINUTE_MS
    await rates.count([ok] * 2 + [failed] * 2)  # 4 of 16 over 5 min: 25 %
    assert await rates.evaluate() == 1
    assert await rates.evaluate() == 0  # the same episode
    alert = (await queued(redis, stream, rule))[0]
    assert alert.details["errors"] == 4 and alert.details["requests"] == 16
    assert "failed 25.0 % of its requests over the last 5 min" in alert.text
    now["ms"] += 6 * MINUTE_MS  # the window holds nothing now: too few requests
    assert await rates.evaluate() == 0
    await rates.count([failed] * 10)
    # The episode's key expires 5 min (Redis's own clock) after the rate was last high;
    # deleting it stands for that wait: the next episode is raised again.
    await redis.delete(*[k async for k in redis.scan_iter(match=f"{{{stream}}}:sent:*")])
    assert await rates.evaluate() == 1


async def test_growing_dead_letters_and_a_gateway_failing_open_are_raised_once(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    letters = await rule_on(pool, AlertKind.DEAD_LETTERS)
    opened = await rule_on(pool, AlertKind.LIMITER_OPEN)
    rules = RuleCache(pool, 60)
    await rules.refresh()
    stream = f"test.alerts.{uuid.uuid4().hex}"
    watcher = Watcher(redis, rules, stream, ErrorRateAlerts(redis, rules, stream), 60)
    await watcher.check_once()  # whatever other tests left in this Redis
    dlq = f"test.conditions.{uuid.uuid4().hex}.dlq"
    await redis.xadd(dlq, {"data": "x", "error": "unreadable"})
    instance = unique("gateway")
    now = datetime.now(UTC)
    state = GatewayState(instance=instance, at=now, started_at=now, limiter_failing=True,
                         recent=GatewayCounts(limiter_failed_open=7))  # fmt: skip
    await publish_gateway_state(redis, state)
    try:
        await watcher.check_once()
        await watcher.check_once()  # nothing new: the same hour, the same episode
        await redis.xadd(dlq, {"data": "y", "error": "unreadable"})
        await watcher.check_once()  # grew again within the hour: not raised again
    finally:
        await withdraw_gateway_state(redis, instance)
        await redis.delete(dlq)
    mine = [a for a in await queued(redis, stream, letters) if a.details["stream"] == dlq]
    assert len(mine) == 1 and mine[0].details["length"] == 1 and mine[0].project_id is None
    assert "dead letters are growing in" in mine[0].text
    gateways = [a for a in await queued(redis, stream, opened) if a.details["gateway"] == instance]
    assert len(gateways) == 1 and gateways[0].kind == AlertKind.LIMITER_OPEN.value
    assert f"gateway {instance} let 7 requests through unchecked" in gateways[0].text
