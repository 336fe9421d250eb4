"""Conditions checked every ``limiter_alert_check_seconds`` (each replica checks; the
dedupe keys make one alert of them), only while some rule names their kind:

- ``dead-letters``: a ``<stream>.dlq`` stream (any, found by SCAN) longer than when it
  was last looked at. The last length seen is kept in Redis and swapped in one script,
  so of two replicas one sees a rise. Raised at most once an hour per stream and rule
  (the next rise after that hour alerts again). Every rule naming the kind gets it,
  whatever project it watches: dead letters belong to no project.
- ``limiter-open``: a gateway replica reports requests let through unchecked because
  the limiter was unreachable (``contracts.gateway_state``: ``recent.limiter_failed_open``,
  the last 5 minutes). One alert per replica's episode: the dedupe key is extended while
  the replica keeps reporting it, and expires 5 minutes after it stops. Every rule naming
  the kind gets it.
- ``error-rate``: ``error_rate.ErrorRateAlerts.evaluate``.

A Redis error skips the round (logged); the next one looks again, so a rise is late,
never lost: the last length is swapped only when the alerts were queued.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from watchllm_limiter.alerts.error_rate import ErrorRateAlerts
from watchllm_limiter.alerts.queue import alert_for, raise_once
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_shared.contracts.alerts import AlertKind, dedupe_key
from watchllm_shared.contracts.gateway_state import RECENT_WINDOW_SECONDS, read_gateway_states
from watchllm_shared.redis_io import redis_now_ms

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


class Watcher:
    def __init__(
        self, redis: aioredis.Redis, rules: RuleCache, stream: str, error_rates: ErrorRateAlerts,
        interval_seconds: float,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._rules = rules
        self._stream = stream
        self._error_rates = error_rates
        self._interval = interval_seconds
        self._seen = "{" + stream + "}:dlq-lengths"

    async def run(self) -> None:
        while True:
            try:
                await self.check_once()
            except (RedisError, OSError) as exc:
                log.warning("alert conditions not checked, Redis: %s", exc)
            await asyncio.sleep(self._interval)

    async def check_once(self) -> int:
        """Look at every condition some rule names; how many alerts were queued."""
        kinds = self._rules.kinds()
        raised = 0
        if AlertKind.DEAD_LETTERS in kinds:
            raised += await self._dead_letters()
        if AlertKind.LIMITER_OPEN in kinds:
            raised += await self._limiter_open()
        if AlertKind.ERROR_RATE in kinds:
            raised += await self._error_rates.evaluate()
        return raised

    async def _dead_letters(self) -> int:
        streams = [name async for name in self._redis.scan_iter(match="*.dlq", _type="stream")]
        if not streams:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in streams:
                pipe.xlen(name)
            pipe.hmget(self._seen, streams)
            replies: list[Any] = await pipe.execute()
        lengths, seen = replies[:-1], replies[-1]
        now_ms, raised = await redis_now_ms(self._redis), 0
        for name, length, before in zip(streams, lengths, seen, strict=True):
            previous = int(before or 0)
            if length <= previous:
                if length < previous:  # trimmed or replayed: count from here
                    await self._redis.hset(self._seen, name, length)
                continue
            stream = name.decode() if isinstance(name, bytes) else str(name)
            for rule in self._rules.with_kind(AlertKind.DEAD_LETTERS):
                text = (f"WatchLLM: dead letters are growing in {stream}: {length} entries "
                        f"({length - previous} new) wait for an operator")  # fmt: skip
                details: dict[str, str | int | float | None] = {
                    "stream": stream,
                    "length": length,
                    "new": length - previous,
                }
                key = dedupe_key(self._stream, "dead-letters", rule.id, stream, now_ms // HOUR_MS)
                alert = alert_for(rule, AlertKind.DEAD_LETTERS, None, text, details)
                raised += await raise_once(self._redis, self._stream, key, HOUR_MS, alert)
            await self._redis.hset(self._seen, name, length)
        return raised

    async def _limiter_open(self) -> int:
        raised = 0
        for state in await read_gateway_states(self._redis):
            opened = state.recent.limiter_failed_open
            if opened <= 0:
                continue
            for rule in self._rules.with_kind(AlertKind.LIMITER_OPEN):
                text = (f"WatchLLM: gateway {state.instance} let {opened} requests through "
                        f"unchecked in the last {state.window_seconds // 60} min: the limiter "
                        f"(Redis) did not answer")  # fmt: skip
                details: dict[str, str | int | float | None] = {
                    "gateway": state.instance, "failed_open": opened,
                    "failing_now": int(state.limiter_failing)}  # fmt: skip
                key = dedupe_key(self._stream, "limiter-open", rule.id, state.instance)
                alert = alert_for(rule, AlertKind.LIMITER_OPEN, None, text, details)
                window_ms = RECENT_WINDOW_SECONDS * 1000
                raised += await raise_once(self._redis, self._stream, key, window_ms, alert,
                                           episode=True)  # fmt: skip
        return raised
