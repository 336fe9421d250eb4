"""What the limiter's lifespan wires: the rules, the charger's hook (budget thresholds,
error-rate counts), and the background tasks (rules refresh, the periodic checks, the
delivery consumer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import httpx
import redis.asyncio as aioredis

from watchllm_limiter.alerts.budget import BudgetAlerts
from watchllm_limiter.alerts.delivery import AlertDelivery
from watchllm_limiter.alerts.error_rate import ErrorRateAlerts
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_limiter.alerts.watch import Watcher
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts import RequestCompleted


class Alerting:
    def __init__(
        self, redis: aioredis.Redis, pool: asyncpg.Pool, http: httpx.AsyncClient,
        settings: LimiterSettings, metrics: LimiterMetrics,
    ) -> None:  # fmt: skip
        stream = settings.limiter_alerts_stream
        self.rules = RuleCache(pool, settings.limiter_alert_rules_refresh_seconds)
        self.budget = BudgetAlerts(redis, self.rules, stream)
        self.error_rates = ErrorRateAlerts(redis, self.rules, stream)
        self.watcher = Watcher(redis, self.rules, stream, self.error_rates,
                               settings.limiter_alert_check_seconds)  # fmt: skip
        self.delivery = AlertDelivery(redis, http, settings, metrics=metrics, rules=self.rules)

    async def after_charge(self, events: Sequence[RequestCompleted]) -> None:
        """The charger's hook: every readable event of a charged batch, before its ack."""
        await self.error_rates.count(events)
        await self.budget.after_charge(events)

    def start(self, stopping: asyncio.Event) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.rules.run(), name="alert-rules"),
            asyncio.create_task(self.watcher.run(), name="alert-checks"),
            # An attempt in flight is cut at shutdown: its alert stays pending, reclaimed.
            asyncio.create_task(self.delivery.run(stopping), name="alert-delivery"),
        ]
