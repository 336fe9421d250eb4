"""Error rate per project: above ``error_rate_percent`` of its requests over the last
``error_rate_minutes``, for a rule that watches ``error-rate``.

- Counting (``count``, from the charger's hook, every event with a project): requests
  and errors per project and minute (Redis's clock), in one hash per minute that expires
  when no rule could still read it. Only projects a rule watches are counted, so the
  others cost nothing. An error is a failure the project's callers saw and did not cause:
  ``upstream_error``, ``upstream_timeout``, ``gateway_error`` or any 5xx; refusals (4xx,
  429) are not errors. A batch read twice (a consumer died before acknowledging it) is
  counted twice: a rate, not money.
- Evaluating (``evaluate``, every ``limiter_alert_check_seconds`` from ``watch``): the
  minutes in each rule's window summed; at least ``MIN_REQUESTS`` requests, so one
  failed request of one is not 100 %. An episode is alerted once: its dedupe key lives
  as long as the rule's window and is extended while the rate stays high
  (``queue.raise_once(episode=True)``).
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from watchllm_limiter.alerts.queue import alert_for, raise_once
from watchllm_limiter.alerts.rules import RuleCache
from watchllm_shared.accounts.alerts import AlertRule
from watchllm_shared.contracts import RequestCompleted, RequestStatus
from watchllm_shared.contracts.alerts import Alert, AlertKind, dedupe_key
from watchllm_shared.redis_io import redis_now_ms

MIN_REQUESTS = 10
MAX_MINUTES = 1440  # the longest window a rule may have (accounts.alerts)
MINUTE_MS = 60_000
_ERRORS = {
    RequestStatus.UPSTREAM_ERROR,
    RequestStatus.UPSTREAM_TIMEOUT,
    RequestStatus.GATEWAY_ERROR,
}


def is_error(event: RequestCompleted) -> bool:
    return event.status in _ERRORS or event.http_status >= 500


class ErrorRateAlerts:
    def __init__(
        self, redis: aioredis.Redis, rules: RuleCache, stream: str,
        clock: Callable[[], Awaitable[int]] | None = None,
    ) -> None:  # fmt: skip
        self._redis = redis
        self._rules = rules
        self._stream = stream
        self._clock = clock or functools.partial(redis_now_ms, redis)
        self._active = "{" + stream + "}:rate:active"

    def _minute_key(self, project_id: uuid.UUID, minute: int) -> str:
        return "{" + self._stream + "}:rate:" + f"{project_id}:{minute}"

    async def count(self, events: Sequence[RequestCompleted]) -> None:
        requests: Counter[uuid.UUID] = Counter()
        errors: Counter[uuid.UUID] = Counter()
        for event in events:
            if event.project_id is not None and self._rules.watching(
                event.project_id, AlertKind.ERROR_RATE
            ):
                requests[event.project_id] += 1
                errors[event.project_id] += is_error(event)
        if not requests:
            return
        now_ms = await self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            for project_id, n in requests.items():
                key = self._minute_key(project_id, now_ms // MINUTE_MS)
                pipe.hincrby(key, "n", n)
                pipe.hincrby(key, "e", errors[project_id])
                pipe.pexpire(key, (MAX_MINUTES + 1) * MINUTE_MS)
                pipe.zadd(self._active, {str(project_id): now_ms})
            pipe.zremrangebyscore(self._active, "-inf", now_ms - MAX_MINUTES * MINUTE_MS)
            await pipe.execute()

    async def evaluate(self) -> int:
        """Raise what is above its rule's rate now; how many alerts were queued."""
        now_ms = await self._clock()
        raised = 0
        members: Any = await self._redis.zrangebyscore(
            self._active, now_ms - MAX_MINUTES * MINUTE_MS, "+inf"
        )
        for member in members:
            project_id = uuid.UUID(member.decode())
            rules = self._rules.watching(project_id, AlertKind.ERROR_RATE)
            if not rules:
                continue
            minutes = await self._minutes(
                project_id, now_ms, max(r.error_rate_minutes for r in rules)
            )
            for rule in rules:
                n = sum(m[0] for m in minutes[: rule.error_rate_minutes])
                e = sum(m[1] for m in minutes[: rule.error_rate_minutes])
                if n >= MIN_REQUESTS and e * 100 > rule.error_rate_percent * n:
                    key = dedupe_key(self._stream, "error-rate", rule.id, project_id)
                    alert = self._alert(rule, project_id, n, e)
                    ttl = rule.error_rate_minutes * MINUTE_MS
                    raised += await raise_once(self._redis, self._stream, key, ttl, alert,
                                               episode=True)  # fmt: skip
        return raised

    async def _minutes(
        self, project_id: uuid.UUID, now_ms: int, count: int
    ) -> list[tuple[int, int]]:
        """(requests, errors) of the last ``count`` minutes, newest first."""
        minute = now_ms // MINUTE_MS
        async with self._redis.pipeline(transaction=False) as pipe:
            for back in range(count):
                pipe.hmget(self._minute_key(project_id, minute - back), "n", "e")
            replies: list[Any] = await pipe.execute()
        return [(int(n or 0), int(e or 0)) for n, e in replies]

    def _alert(self, rule: AlertRule, project_id: uuid.UUID, n: int, e: int) -> Alert:
        name = self._rules.project_name(project_id)
        percent = round(e * 100 / n, 1)
        text = (f"WatchLLM: project {name} failed {percent} % of its requests over the last "
                f"{rule.error_rate_minutes} min ({e} of {n}; the rule's bar is "
                f"{rule.error_rate_percent.normalize():f} %)")  # fmt: skip
        details: dict[str, str | int | float | None] = {
            "project": name, "requests": n, "errors": e, "error_percent": percent,
            "minutes": rule.error_rate_minutes,
            "bar_percent": f"{rule.error_rate_percent.normalize():f}",
        }  # fmt: skip
        return alert_for(rule, AlertKind.ERROR_RATE, project_id, text, details)
