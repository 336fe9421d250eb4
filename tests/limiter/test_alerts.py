"""Alerts, evaluated and delivered by the limiter against a real webhook receiver on
loopback, real Redis and the rules in real Postgres: a budget's thresholds reach the
receiver exactly once per window while spend crosses them through the real charging
path; a receiver answering 500 is retried until it answers 2xx; a delivering consumer
that stops mid-retry is replaced and the alert still arrives; deliveries are signed
(HMAC-SHA256 over timestamp and body) and can be Slack-shaped."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from click.testing import CliRunner

from tests.conftest import unique
from tests.limiter.test_token_charger import charger, event, run_until_drained
from tests.support.webhook_receiver import Receiver, webhook_receiver
from watchllm_limiter.alerts.budget import BudgetAlerts
from watchllm_limiter.alerts.delivery import AlertDelivery
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.accounts import AccountStore, Plan
from watchllm_shared.accounts.alerts import AlertRule, AlertStore
from watchllm_shared.cli.main import cli
from watchllm_shared.contracts.alerts import (
    ALERTS_GROUP,
    Alert,
    AlertFormat,
    AlertKind,
    DeliveryRecord,
    recent_deliveries,
)
from watchllm_shared.contracts.budgets import DAY_MS, SPEND_FUNCTION, charge_spend_keys
from watchllm_shared.contracts.limits import limits_key

pytestmark = pytest.mark.integration

USD = 10**9


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


async def project_with_rule(
    pool: asyncpg.Pool, url: str, **options: Any
) -> tuple[uuid.UUID, AlertRule]:
    name = unique("alerts")
    project = await AccountStore(pool, actor="tests").create_project(name, Plan.PRO)
    rule = await AlertStore(pool, actor="tests").add_rule(
        url, [AlertKind.BUDGET], project_name=name, **options
    )
    return project.id, rule


def settings(consumer: str) -> LimiterSettings:
    suffix = uuid.uuid4().hex
    return LimiterSettings(
        limiter_alerts_stream=f"test.alerts.{suffix}",
        limiter_alert_log_stream=f"test.log.{suffix}",
        limiter_consumer_name=consumer, limiter_reclaim_idle_ms=300,
        limiter_alert_retry_initial_seconds=0.05, limiter_alert_retry_max_seconds=0.2,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def delivering(
    redis: aioredis.Redis,
    config: LimiterSettings,
    environ: dict[str, str] | None = None,
    metrics: LimiterMetrics | None = None,
    rules: RuleCache | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    async with httpx.AsyncClient(timeout=5) as http:
        delivery = AlertDelivery(redis, http, config, environ or {}, metrics, rules)
        stopping = asyncio.Event()
        task = asyncio.create_task(delivery.run(stopping))
        try:
            yield task
        finally:  # the flag too: a cancellation inside redis-py's reply wait can be lost
            stopping.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30) -> None:
    """Poll ``check`` until it holds; the deadline only bounds a failure."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def pending(redis: aioredis.Redis, stream: str) -> int:
    return int((await redis.xpending(stream, ALERTS_GROUP))["pending"])


async def log_of(redis: aioredis.Redis, config: LimiterSettings) -> list[DeliveryRecord]:
    """The delivery log, oldest first, as the dashboard reads it."""
    return (await recent_deliveries(redis, 100, config.limiter_alert_log_stream))[::-1]


async def test_each_budget_threshold_reaches_the_webhook_once_per_window(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    """Spend charged by the real charger (events on a stream) crosses 50, 80 and 100 %
    of a 1 USD daily budget; a second replica evaluating the same spend raises nothing
    more; the receiver gets three alerts, one per threshold."""
    config = settings("alerts-a")
    with webhook_receiver() as receiver:
        project, rule = await project_with_rule(pool, receiver.url)
        await redis.hset(limits_key(project), "bd", USD)
        rules = RuleCache(pool, 60)
        await rules.refresh()
        budget = BudgetAlerts(redis, rules, config.limiter_alerts_stream)
        stream, key = f"test.limiter.{uuid.uuid4().hex}", uuid.uuid4()
        costs = ["0.3", "0.3", "0.1", "0.15", "0.2", "0.1"]  # 30, 60, 70, 85, 105, 115 %
        async with delivering(redis, config):
            for cost in costs:
                charged = event(project, key, 10).model_copy(update={"cost_usd": Decimal(cost)})
                await redis.xadd(stream, charged.to_stream_fields())  # type: ignore[arg-type]
                token_charger = charger(redis, stream, "c1", after_charge=budget.after_charge)
                await run_until_drained(token_charger, redis, stream)
            replica = BudgetAlerts(redis, rules, config.limiter_alerts_stream)
            assert await replica.after_charge([charged]) == 0  # another replica: once
            await until(lambda: delivered_all(redis, config, receiver, 3), "3 deliveries")
    bodies = [orjson.loads(r.body) for r in receiver.got()]
    assert [b["details"]["threshold_percent"] for b in bodies] == [50, 80, 100]
    assert {b["rule_id"] for b in bodies} == {str(rule.id)}
    assert bodies[0]["details"]["spent_usd"] == "0.6" and bodies[0]["details"]["budget_usd"] == "1"
    assert "has spent 100 % of its daily budget (1.05 of 1 USD)" in bodies[2]["text"]


async def delivered_all(
    redis: aioredis.Redis, config: LimiterSettings, receiver: Receiver, count: int
) -> bool:
    return len(receiver.delivered()) >= count and await pending(
        redis, config.limiter_alerts_stream
    ) == 0 and await redis.xlen(config.limiter_alerts_stream) == 0  # fmt: skip


async def test_a_new_window_raises_its_thresholds_again(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    """A controlled clock (the library's ``now`` argument and the evaluator's): 50 %
    of one day's budget is raised once that day, and again the next day."""
    config = settings("alerts-window")
    project, _ = await project_with_rule(pool, "https://hooks.example.com/x", thresholds=[50])
    await redis.hset(limits_key(project), "bd", USD)
    rules = RuleCache(pool, 60)
    await rules.refresh()
    now = {"ms": int(datetime(2031, 3, 10, 23, 0, tzinfo=UTC).timestamp() * 1000)}

    async def clock() -> int:
        return now["ms"]

    budget = BudgetAlerts(redis, rules, config.limiter_alerts_stream, clock=clock)
    key = uuid.uuid4()

    async def spend(usd: str) -> int:
        charged = event(project, key, 1).model_copy(update={"cost_usd": Decimal(usd)})
        keys = charge_spend_keys(project, key, charged.event_id)
        nanos = int(Decimal(usd) * USD)
        assert await redis.fcall(SPEND_FUNCTION, len(keys), *keys, nanos, now["ms"], now["ms"])
        return await budget.after_charge([charged])

    assert [await spend("0.6"), await spend("0.1")] == [1, 0]
    now["ms"] += 2 * 3_600_000  # 01:00 the next day (UTC): a new daily window
    assert [await spend("0.4"), await spend("0.2")] == [0, 1]
    assert await redis.xlen(config.limiter_alerts_stream) == 2
    assert now["ms"] // DAY_MS > (now["ms"] - 2 * 3_600_000) // DAY_MS


def verified(secret: str, received: Any) -> bool:
    timestamp = received.headers["x-watchllm-timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256)
    expected = f"sha256={mac.hexdigest()}"
    return hmac.compare_digest(received.headers["x-watchllm-signature"], expected)


def an_alert(url: str, **fields: Any) -> Alert:
    return Alert(
        alert_id=uuid.uuid4(), kind="test", rule_id=uuid.uuid4(), text="spend is high",
        occurred_at=datetime.now(UTC), webhook_url=url, **fields,
    )  # fmt: skip


async def test_a_failing_webhook_is_retried_until_2xx_signed_and_slack_shaped(
    redis: aioredis.Redis,
) -> None:
    config = settings("alerts-retry")
    with webhook_receiver() as receiver:
        receiver.answer(500, 500)
        alert = an_alert(receiver.url, format=AlertFormat.SLACK, secret_env="HOOK_SECRET")
        await redis.xadd(config.limiter_alerts_stream, alert.to_stream_fields())  # type: ignore[arg-type]
        metrics = LimiterMetrics()
        async with delivering(redis, config, {"HOOK_SECRET": "s3cret"}, metrics):
            await until(lambda: delivered_all(redis, config, receiver, 1), "delivered")
    attempts = metrics.alert_attempts
    assert [attempts.labels(o)._value.get() for o in ("failed", "delivered")] == [2, 1]
    got = receiver.got()
    assert [r.answered for r in got] == [500, 500, 200]
    assert all(r.body == b'{"text":"spend is high"}' for r in got)
    assert all(r.headers["x-watchllm-alert-id"] == str(alert.alert_id) for r in got)
    assert all(verified("s3cret", r) for r in got) and not verified("other", got[0])
    log = await log_of(redis, config)
    assert [(r.attempt, r.delivered, r.http_status) for r in log] == [
        (1, False, 500), (2, False, 500), (3, True, 200)
    ]  # fmt: skip
    assert {r.target for r in log} == {receiver.url.split("/hooks")[0]}  # no path: a secret


async def test_an_alert_survives_its_consumer_stopping_mid_retry(redis: aioredis.Redis) -> None:
    """The first consumer's attempt gets a 500 and it stops before retrying (a restart);
    the entry stays pending, the next consumer reclaims it once idle and delivers it."""
    first, second = settings("alerts-first"), settings("alerts-second")
    second = second.model_copy(update={
        "limiter_alerts_stream": first.limiter_alerts_stream,
        "limiter_alert_log_stream": first.limiter_alert_log_stream,
        "limiter_alert_retry_initial_seconds": 60.0,  # only the reclaim can deliver it
    })  # fmt: skip
    first = first.model_copy(update={"limiter_alert_retry_initial_seconds": 60.0})
    with webhook_receiver() as receiver:
        receiver.answer(500)
        alert = an_alert(receiver.url)
        await redis.xadd(first.limiter_alerts_stream, alert.to_stream_fields())  # type: ignore[arg-type]
        async with delivering(redis, first):
            await until(lambda: _true(len(receiver.got()) == 1), "the first attempt")
        assert await pending(redis, first.limiter_alerts_stream) == 1
        async with delivering(redis, second):
            await until(lambda: delivered_all(redis, first, receiver, 1), "redelivered")
    got = receiver.got()
    assert [r.answered for r in got] == [500, 200]
    assert orjson.loads(got[1].body)["id"] == str(alert.alert_id)


async def _true(value: bool) -> bool:
    return value


async def test_the_secret_variable_unset_means_no_unsigned_delivery(
    redis: aioredis.Redis,
) -> None:
    config = settings("alerts-unset")
    with webhook_receiver() as receiver:
        alert = an_alert(receiver.url, secret_env="MISSING_SECRET")
        await redis.xadd(config.limiter_alerts_stream, alert.to_stream_fields())  # type: ignore[arg-type]
        async with delivering(redis, config, {}):
            await until(lambda: _has_log(redis, config), "a failed attempt logged")
        assert receiver.got() == []
    record = (await log_of(redis, config))[0]
    assert not record.delivered and record.error == "secret variable MISSING_SECRET is not set"
    assert await pending(redis, config.limiter_alerts_stream) == 1  # kept for a retry


async def _has_log(redis: aioredis.Redis, config: LimiterSettings) -> bool:
    return await redis.exists(config.limiter_alert_log_stream) == 1


async def test_the_cli_test_command_reports_the_delivery(
    redis: aioredis.Redis, pool: asyncpg.Pool, database_url: str, redis_url: str
) -> None:
    """`watchllm alerts test` queues on the real stream and waits for the limiter's
    delivery log: a consumer on the default streams delivers it, signed."""
    config = LimiterSettings(limiter_consumer_name=f"cli-{uuid.uuid4().hex[:6]}")
    with webhook_receiver() as receiver:
        _, rule = await project_with_rule(pool, receiver.url, secret_env="CLI_SECRET")
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        async with delivering(redis, config, {"CLI_SECRET": "k"}):
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["alerts", "test", str(rule.id), "--wait", "20"], env=env
            )
        assert result.exit_code == 0, result.output
        target = receiver.url.split("/hooks")[0]
        assert f"delivered: {target} answered 200" in result.output
        mine = [r for r in receiver.got() if orjson.loads(r.body)["rule_id"] == str(rule.id)]
        assert (
            len(mine) == 1
            and verified("k", mine[0])
            and orjson.loads(mine[0].body)["kind"] == "test"
        )


async def test_an_entry_that_is_not_an_alert_is_parked_without_quoting_it(
    redis: aioredis.Redis,
) -> None:
    config = settings("alerts-poison")
    stream = config.limiter_alerts_stream
    await redis.xadd(stream, {"data": b'{"webhook_url": "https://h.example.com/SECRET"}'})
    await redis.xadd(stream, an_alert("file:///etc/passwd").to_stream_fields())  # type: ignore[arg-type]
    async with delivering(redis, config):
        await until(lambda: _parked(redis, stream, 2), "both parked")
    parked: Any = await redis.xrange(f"{stream}.dlq")
    errors = [fields[b"error"].decode() for _, fields in parked]
    assert errors[0].startswith("not an alert: bad ") and "SECRET" not in errors[0]
    assert "must start with http:// or https://" in errors[1]
    assert await pending(redis, stream) == 0


async def _parked(redis: aioredis.Redis, stream: str, count: int) -> bool:
    return await redis.exists(f"{stream}.dlq") == 1 and await redis.xlen(f"{stream}.dlq") >= count


async def test_alerts_of_a_removed_rule_are_dropped_not_retried(
    redis: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    config = settings("alerts-removed")
    with webhook_receiver() as receiver:
        _, kept = await project_with_rule(pool, receiver.url)
        _, removed = await project_with_rule(pool, receiver.url)
        await AlertStore(pool, actor="tests").remove_rule(removed.id)
        rules = RuleCache(pool, 60)
        await rules.refresh()
        raised = datetime.now(UTC) - timedelta(minutes=5)  # queued before the removal
        for rule in (removed, kept):
            alert = an_alert(receiver.url).model_copy(
                update={"rule_id": rule.id, "occurred_at": raised}
            )
            await redis.xadd(config.limiter_alerts_stream, alert.to_stream_fields())  # type: ignore[arg-type]
        # Just raised: another replica may not have read its new rule yet; kept.
        fresh = an_alert(receiver.url).model_copy(update={"rule_id": uuid.uuid4()})
        await redis.xadd(config.limiter_alerts_stream, fresh.to_stream_fields())  # type: ignore[arg-type]
        async with delivering(redis, config, rules=rules):
            await until(lambda: delivered_all(redis, config, receiver, 2), "two delivered")
    assert sorted(orjson.loads(r.body)["rule_id"] for r in receiver.got()) == sorted(
        [str(kept.id), str(fresh.rule_id)])  # fmt: skip
    dropped = [r for r in await log_of(redis, config) if r.rule_id == removed.id]
    assert [(r.delivered, r.error) for r in dropped] == [(False, "rule removed: not sent")]
