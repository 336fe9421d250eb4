"""The gateway's semantic-cache breaker against the real Redis, with no cache service
answering: after the pause, one request probes and the others do not wait."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from watchllm_gateway.cache_client import CacheClient
from watchllm_gateway.metrics import GatewayMetrics
from watchllm_shared.redis_io import create_redis
from watchllm_shared.redis_packed import PackedCommands

pytestmark = pytest.mark.integration

DEADLINE = 0.15


async def test_after_the_pause_exactly_one_request_probes(redis_url: str) -> None:
    redis = create_redis(redis_url, socket_timeout=False)
    commands = PackedCommands(redis)
    client = CacheClient(redis, commands, GatewayMetrics(), f"gw-{uuid.uuid4().hex[:6]}",
                         DEADLINE)  # fmt: skip

    async def waited() -> float:
        started = time.perf_counter()
        hit = await client.lookup(uuid.uuid4().hex, uuid.uuid4(), f"exact-{uuid.uuid4().hex}",
                                  ("scope", "How do I reset my password?"), None)  # fmt: skip
        assert hit is None
        return time.perf_counter() - started

    try:
        for _ in range(3):  # nobody answers: three timeouts open the breaker
            assert await waited() >= DEADLINE * 0.9
        paused = await asyncio.gather(*(waited() for _ in range(20)))
        assert max(paused) < DEADLINE * 0.9  # skipped at once during the pause
        await asyncio.sleep(1.05)  # the pause is over
        burst = await asyncio.gather(*(waited() for _ in range(20)))
        assert sum(t >= DEADLINE * 0.9 for t in burst) == 1  # one probe, not twenty
    finally:
        await commands.aclose()
        await redis.aclose()
