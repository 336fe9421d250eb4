"""Cache fixtures: the real embedding model (installed by `make models`), loaded once;
a client of the test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from watchllm_cache.embedding import Embedder
from watchllm_cache.settings import SemanticSettings


@pytest.fixture(scope="session")
def semantic_settings() -> SemanticSettings:
    return SemanticSettings()


@pytest.fixture(scope="session")
def embedder(semantic_settings: SemanticSettings) -> Embedder:
    return Embedder(semantic_settings.embedding_model_path, semantic_settings.embedding_model_name)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()
