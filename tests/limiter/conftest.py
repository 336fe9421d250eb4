"""Limiter fixtures: the Functions library loaded into the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from watchllm_limiter.library import ensure_library


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await ensure_library(client)
    yield client
    await client.aclose()
