"""Cache fixtures: the real embedding model (installed by `make models`), loaded once."""

from __future__ import annotations

import pytest

from watchllm_cache.embedding import Embedder
from watchllm_cache.settings import SemanticSettings


@pytest.fixture(scope="session")
def semantic_settings() -> SemanticSettings:
    return SemanticSettings()


@pytest.fixture(scope="session")
def embedder(semantic_settings: SemanticSettings) -> Embedder:
    return Embedder(semantic_settings.embedding_model_path, semantic_settings.embedding_model_name)
