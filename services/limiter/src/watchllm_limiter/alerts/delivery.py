"""The delivery consumer: calls each queued alert's webhook until it answers 2xx.

Every limiter replica runs one, in the group ``ALERTS_GROUP`` of the alerts stream, so
each alert is delivered by one replica. An entry is acknowledged (and deleted: the
group is the stream's only reader) only after a 2xx, so:

- A failed attempt (a status other than 2xx, a connection error, a timeout, the
  secret's variable unset) is retried by the replica that holds it, after
  ``limiter_alert_retry_initial_seconds`` doubling to ``limiter_alert_retry_max_seconds``,
  without end: an alert is never dropped because its receiver is down.
- The replica keeps what it holds claimed (XCLAIM JUSTID each round resets the idle
  time), so another replica does not take it while it waits to retry.
- A replica that dies or restarts leaves its entries pending; once idle for
  ``limiter_reclaim_idle_ms`` any replica (the restarted one too) takes them over
  (XAUTOCLAIM) and delivers them: an alert survives a restart.
- An alert whose rule was removed (``watchllm alerts remove``) is dropped before its
  next attempt, logged as such (``rules.RuleCache.removed``); test alerts too.
- An entry that is not an alert, or whose URL is not http(s), can never be delivered:
  it goes to ``<stream>.dlq`` with its error.
- Every attempt is written to the delivery log (``DELIVERY_LOG_STREAM``, the last
  ~1,000): the alert, the attempt's number, delivered or not, the status or the error's
  kind, and the target as scheme and host only. Logs name the target the same way.
- Metrics: ``watchllm_limiter_alert_attempts{outcome}`` (delivered, failed, parked,
  dropped) and
  ``watchllm_limiter_alerts_waiting`` (held for a retry): a webhook down shows there.
- Shutdown: the attempt in flight is cancelled with the task; its entry stays pending
  and is reclaimed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import redis.asyncio as aioredis
from pydantic import ValidationError

from watchllm_limiter.alerts.rules import RuleCache
from watchllm_limiter.alerts.webhook import Outcome, send
from watchllm_limiter.metrics import LimiterMetrics
from watchllm_limiter.settings import LimiterSettings
from watchllm_shared.contracts.alerts import (
    ALERTS_GROUP,
    DELIVERY_LOG_MAXLEN,
    Alert,
    DeliveryRecord,
    target_of,
    webhook_url_error,
)
from watchllm_shared.stream_group import consume_forever, dead_letter

log = logging.getLogger(__name__)

_BLOCK_MS = 1000
_AT_ONCE = 16  # attempts in flight per replica


@dataclass(slots=True)
class _Held:
    alert: Alert
    attempts: int = 0
    due: float = 0.0  # monotonic


class AlertDelivery:
    def __init__(
        self, redis: aioredis.Redis, http: httpx.AsyncClient, settings: LimiterSettings,
        environ: Mapping[str, str] | None = None, metrics: LimiterMetrics | None = None,
        rules: RuleCache | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._rules = rules
        self._metrics = metrics or LimiterMetrics()
        self._http = http
        self._environ = os.environ if environ is None else environ
        self._stream = settings.limiter_alerts_stream
        self._log_stream = settings.limiter_alert_log_stream
        self._consumer = settings.limiter_consumer_name
        self._reclaim_idle_ms = settings.limiter_reclaim_idle_ms
        self._initial = settings.limiter_alert_retry_initial_seconds
        self._max = settings.limiter_alert_retry_max_seconds
        self._held: dict[bytes, _Held] = {}
        self._gate = asyncio.Semaphore(_AT_ONCE)

    async def run(self, stopping: asyncio.Event | None = None) -> None:
        await consume_forever(self._redis, self._stream, ALERTS_GROUP, self._round,
                              "alert delivery", stopping=stopping)  # fmt: skip

    async def _round(self) -> None:
        await self._reclaim()
        await self._read_new()
        await self._keep_held()
        due = [(entry_id, held) for entry_id, held in self._held.items()
               if held.due <= time.monotonic()]  # fmt: skip
        await asyncio.gather(*(self._attempt(entry_id, held) for entry_id, held in due))
        self._metrics.alerts_waiting.set(len(self._held))

    async def _reclaim(self) -> None:
        reply: Any = await self._redis.xautoclaim(
            self._stream, ALERTS_GROUP, self._consumer, self._reclaim_idle_ms, "0-0", count=100
        )
        await self._take([(entry_id, fields) for entry_id, fields in reply[1] if fields])

    async def _read_new(self) -> None:
        waits = [held.due - time.monotonic() for held in self._held.values()]
        block = int(min([_BLOCK_MS / 1000, *waits]) * 1000)
        reply: Any = await self._redis.xreadgroup(
            ALERTS_GROUP, self._consumer, {self._stream: ">"}, count=100,
            block=block if block > 0 else None,
        )  # fmt: skip
        for _, entries in reply or []:
            await self._take(entries)

    async def _take(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for entry_id, fields in entries:
            if entry_id in self._held:
                continue
            try:
                alert = Alert.from_stream_fields(fields)
            except ValidationError as exc:  # its message would quote the values: a URL
                fields_named = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
                await self._park(entry_id, fields, f"not an alert: bad {fields_named}")
                continue
            except (KeyError, ValueError) as exc:
                await self._park(entry_id, fields, f"not an alert: {type(exc).__name__}")
                continue
            if (error := webhook_url_error(alert.webhook_url)) is not None:
                await self._park(entry_id, fields, f"webhook: {error}")
                continue
            self._held[entry_id] = _Held(alert)

    async def _park(self, entry_id: bytes, fields: dict[bytes, bytes], error: str) -> None:
        await dead_letter(self._redis, self._stream, ALERTS_GROUP, (entry_id, fields), error)
        self._metrics.alert_attempts.labels("parked").inc()
        log.warning("alert entry %s parked in %s.dlq: %s", entry_id, self._stream, error)

    async def _keep_held(self) -> None:
        """Reset the idle time of what this replica holds; forget what it no longer owns."""
        if not self._held:
            return
        owned: Any = await self._redis.xclaim(
            self._stream, ALERTS_GROUP, self._consumer, 0, list(self._held), justid=True
        )
        for entry_id in set(self._held) - set(owned):
            del self._held[entry_id]

    async def _attempt(self, entry_id: bytes, held: _Held) -> None:
        alert = held.alert
        if self._rules is not None and self._rules.removed(alert.rule_id, alert.occurred_at):
            await self._record(held, Outcome(False, error="rule removed: not sent"))
            self._metrics.alert_attempts.labels("dropped").inc()
            await self._done(entry_id)
            return
        async with self._gate:
            outcome = await send(self._http, alert, self._environ)
        held.attempts += 1
        self._metrics.alert_attempts.labels("delivered" if outcome.delivered else "failed").inc()
        await self._record(held, outcome)
        if outcome.delivered:
            await self._done(entry_id)
            return
        delay = min(self._initial * 2 ** (held.attempts - 1), self._max)
        held.due = time.monotonic() + delay
        log.warning("alert %s to %s not delivered (attempt %d: %s); retrying in %.1f s",
                    held.alert.alert_id, target_of(held.alert.webhook_url), held.attempts,
                    outcome.http_status or outcome.error, delay)  # fmt: skip

    async def _done(self, entry_id: bytes) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, ALERTS_GROUP, entry_id)
            pipe.xdel(self._stream, entry_id)
            await pipe.execute()
        del self._held[entry_id]

    async def _record(self, held: _Held, outcome: Outcome) -> None:
        alert = held.alert
        record = DeliveryRecord(
            alert_id=alert.alert_id, rule_id=alert.rule_id, kind=alert.kind,
            project_id=alert.project_id, attempt=held.attempts, delivered=outcome.delivered,
            http_status=outcome.http_status, error=outcome.error,
            target=target_of(alert.webhook_url), at=datetime.now(UTC),
        )  # fmt: skip
        await self._redis.xadd(self._log_stream, {"data": record.model_dump_json()},
                               maxlen=DELIVERY_LOG_MAXLEN, approximate=True)  # fmt: skip
