"""Rate-limit usage as the limiter's Redis state holds it, read without changing it.

The limiter library (services/limiter) keeps, per project (key scheme in
``watchllm_shared.contracts.limits``): a per-UTC-day request counter, sliding 60-second
logs of admitted requests (project, and each key with its own limit) and of token
charges. Only limits that exist are tracked, so a key without its own limit has no log.
Entries older than a minute may linger until the next check removes them, so these
reads count only what falls inside the window. Clock: Redis's own ``TIME``, as the
library's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from watchllm_shared.accounts import ProjectLimits
from watchllm_shared.contracts.limits import day_counter_key, request_log_key, token_log_key
from watchllm_shared.redis_io import redis_now_ms

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class LimitUsage:
    scope: str  # "project" or the key's display label
    kind: str  # "requests/day", "requests/minute", "tokens/minute"
    limit: int
    used: int
    resets_in_seconds: float | None  # the day window; minute windows slide

    @property
    def share(self) -> float:
        return min(1.0, self.used / self.limit) if self.limit else 0.0


def _tokens(members: list[Any]) -> int:
    total = 0
    for member in members:
        text = member.decode() if isinstance(member, bytes) else str(member)
        total += int(text.rsplit(":", 1)[1])
    return total


async def limit_usage(
    redis: aioredis.Redis, limits: ProjectLimits, key_labels: dict[UUID, str]
) -> list[LimitUsage]:
    """Usage against every limit of the project and of its keys, now."""
    now_ms = await redis_now_ms(redis)
    day = now_ms // DAY_MS
    window = f"({now_ms - MINUTE_MS}"
    project = limits.project_id
    keys: list[tuple[str, UUID | None, int | None, int | None]] = [
        ("project", None, limits.rpm, limits.tpm)
    ]
    for limited, (rpm, tpm) in sorted(limits.key_limits.items(), key=lambda kv: str(kv[0])):
        keys.append((key_labels.get(limited, str(limited)), limited, rpm, tpm))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hget(day_counter_key(project), str(day))
        for _, key_id, rpm, tpm in keys:
            if rpm is not None:
                pipe.zcount(request_log_key(project, key_id), window, "+inf")
            if tpm is not None:
                pipe.zrangebyscore(token_log_key(project, key_id), window, "+inf")
        replies = iter(await pipe.execute())
    day_used = int(next(replies) or 0)
    usage = [
        LimitUsage(
            "project",
            "requests/day",
            limits.requests_per_day,
            day_used,
            ((day + 1) * DAY_MS - now_ms) / 1000,
        )
    ]
    for label, _, rpm, tpm in keys:
        if rpm is not None:
            usage.append(LimitUsage(label, "requests/minute", rpm, int(next(replies)), None))
        if tpm is not None:
            usage.append(LimitUsage(label, "tokens/minute", tpm, _tokens(next(replies)), None))
    return usage
