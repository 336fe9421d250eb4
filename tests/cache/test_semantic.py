"""SemanticCache with the real model and qdrant-edge: lookup/store round trips,
isolation, embedding reuse, thresholds, and an index failure turning into a miss."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from watchllm_cache.embedding import DIMENSIONS, Embedder
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.index.server import ServerIndex
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.settings import SemanticSettings

pytestmark = pytest.mark.unit

QUESTION = "How do I change the PIN on my bank card?"


@pytest.fixture
async def cache(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> AsyncIterator[SemanticCache]:
    settings = semantic_settings.model_copy(update={"cache_threshold": 0.9})
    cache = SemanticCache(embedder, EdgeIndex.open(tmp_path / "edge", DIMENSIONS), settings)
    yield cache
    await cache.close()


def test_embeddings_are_unit_length_384_floats(embedder: Embedder) -> None:
    texts = [QUESTION, "What is the process for changing my bank card PIN?", "Cheap flights?"]
    vectors = embedder.embed([*texts, ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > 0.85 > 0.3 > float(vectors[0] @ vectors[2])
    assert np.allclose(embedder.embed_one(QUESTION), vectors[0], atol=1e-6)  # batch = single
    assert embedder.embed([]).shape == (0, 384)


async def test_round_trip_hit_and_refused_near_miss(cache: SemanticCache) -> None:
    project = uuid.uuid4()
    result, vector = await cache.lookup(project, "scope", QUESTION, None)
    assert (result.hit, result.reason) == (False, "no candidate")
    await cache.store(project, "scope", QUESTION, "key-1", 60, vector)

    hit, _ = await cache.lookup(project, "scope", "How can I change the PIN on my bank card?", None)
    assert hit.hit and hit.exact_key == "key-1" and hit.similarity is not None
    assert hit.similarity > 0.95

    refused, _ = await cache.lookup(
        project, "scope", "How do I change the PIN on my credit card?", None
    )
    assert not refused.hit and refused.rule == "single_word"
    assert refused.similarity is not None and refused.similarity > 0.9


async def test_hits_never_cross_projects_or_scopes(cache: SemanticCache) -> None:
    project = uuid.uuid4()
    await cache.store(project, "scope-a", QUESTION, "key-a", 60, None)
    other_project, _ = await cache.lookup(uuid.uuid4(), "scope-a", QUESTION, None)
    other_scope, _ = await cache.lookup(project, "scope-b", QUESTION, None)
    same, _ = await cache.lookup(project, "scope-a", QUESTION, None)
    assert (other_project.hit, other_scope.hit, same.hit) == (False, False, True)


async def test_store_reuses_the_lookup_embedding(cache: SemanticCache, embedder: Embedder) -> None:
    project = uuid.uuid4()
    _, vector = await cache.lookup(project, "s", QUESTION, None)
    calls = embedder.calls
    await cache.store(project, "s", QUESTION, "key", 60, vector)
    assert embedder.calls == calls  # no second embedding
    await cache.store(project, "s", "Another question entirely", "key-2", 60, None)
    assert embedder.calls == calls + 1


async def test_threshold_override_per_request(cache: SemanticCache) -> None:
    project = uuid.uuid4()
    await cache.store(project, "s", QUESTION, "key", 60, None)
    paraphrase = "What is the process for changing my bank card PIN?"  # cosine ~0.91
    strict, _ = await cache.lookup(project, "s", paraphrase, 0.95)
    loose, _ = await cache.lookup(project, "s", paraphrase, 0.85)
    assert (strict.hit, strict.rule) == (False, "threshold")
    assert loose.hit


async def test_a_request_bar_never_lowers_the_default_or_the_project_bar(
    cache: SemanticCache,
) -> None:
    project = uuid.uuid4()
    await cache.store(project, "s", "How do I change my email address on my account?",
                      "key", 60, None)  # fmt: skip
    other = "How do I delete my account?"  # cosine ~0.61: another question
    at_default, _ = await cache.lookup(project, "s", other, None, min_threshold=0.3)
    below_project, _ = await cache.lookup(project, "s", other, 0.9, min_threshold=0.3)
    assert not at_default.hit and not below_project.hit
    paraphrase = "What is the process for changing my bank card PIN?"  # cosine ~0.91
    await cache.store(project, "p", QUESTION, "key2", 60, None)
    raised, _ = await cache.lookup(project, "p", paraphrase, 0.85, min_threshold=0.95)
    assert (raised.hit, raised.rule) == (False, "threshold")


async def test_expired_entries_miss(cache: SemanticCache) -> None:
    project = uuid.uuid4()
    await cache.store(project, "s", QUESTION, "key", -1, None)
    result, _ = await cache.lookup(project, "s", QUESTION, None)
    assert not result.hit
    await cache.purge_expired()


async def test_flush_project_and_delete(cache: SemanticCache) -> None:
    project = uuid.uuid4()
    await cache.store(project, "s", QUESTION, "key", 60, None)
    await cache.store(project, "t", QUESTION, "key-t", 60, None)
    await cache.delete("key")
    assert not (await cache.lookup(project, "s", QUESTION, None))[0].hit
    assert (await cache.lookup(project, "t", QUESTION, None))[0].hit
    await cache.flush_project(project)
    assert not (await cache.lookup(project, "t", QUESTION, None))[0].hit


async def test_an_index_failure_is_a_miss(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> None:
    index = ServerIndex.local(str(tmp_path / "local"), "cache", DIMENSIONS)
    cache = SemanticCache(embedder, index, semantic_settings)
    index.close()  # the engine now refuses every call
    result, vector = await cache.lookup(uuid.uuid4(), "s", QUESTION, None)
    assert not result.hit and result.reason is not None
    assert result.reason.startswith("index error")
    assert vector.shape == (384,) and cache.index_errors == 1
    await cache.close()  # closing again is harmless
