"""The gateway's limiter ask when its own event loop is busy: a reply Redis already
sent must be used, not replaced by the failure policy (Redis counted the request)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from watchllm_gateway.errors import GatewayError
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_gateway.ratelimit import RateLimiter
from watchllm_shared.accounts import KeyGrant, Plan
from watchllm_shared.contracts.limits import limits_key
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration


def _grant() -> KeyGrant:
    return KeyGrant(key_id=uuid.uuid4(), project_id=uuid.uuid4(), project_name="busy",
                    plan=Plan.PRO, active=True, allowed_models=None,
                    requests_per_day=10**6)  # fmt: skip


async def _ask_while_the_loop_is_blocked(limiter: RateLimiter, grant: KeyGrant) -> object:
    ask = asyncio.create_task(limiter.check(grant, uuid.uuid4().hex))
    for _ in range(3):  # let the ask write its FCALL
        await asyncio.sleep(0)
    # On purpose: the loop is busy well past the 0.1 s deadline while Redis answers.
    time.sleep(0.4)  # noqa: ASYNC251
    try:
        return await ask
    except GatewayError as error:
        return error


async def test_a_busy_gateway_still_enforces_the_limit_redis_decided(
    redis: aioredis.Redis,
) -> None:
    grant = _grant()
    await redis.hset(limits_key(grant.project_id), mapping={"rpm": 2})
    commands = PackedCommands(redis)
    limiter = RateLimiter(commands, GatewayMetrics(), timeout_seconds=0.1, policy="open")
    await commands.call("PING")  # a connection made, so the ask is one write and one read
    outcomes = [await _ask_while_the_loop_is_blocked(limiter, grant) for _ in range(3)]
    await commands.aclose()
    assert [o["x-ratelimit-remaining-requests"] for o in outcomes[:2]] == ["1", "0"]  # type: ignore[index]
    refused = outcomes[2]
    assert isinstance(refused, GatewayError) and refused.status == 429, (
        "a late-handled reply was replaced by fail-open: the third request got through"
    )
