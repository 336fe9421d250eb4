"""EmbedBatcher: concurrent asks share one model call, a lone ask waits for nothing,
a failure reaches every ask of its batch only; and through SemanticCache."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from watchllm_cache.batching import EmbedBatcher
from watchllm_cache.embedding import DIMENSIONS, Embedder
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.settings import SemanticSettings

pytestmark = pytest.mark.unit


class FakeModel:
    """Vectors [len(text)]; blocks each call until released, to let asks pile up."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail = False

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.started.set()
        assert self.release.wait(30)
        if self.fail:
            raise RuntimeError("model broke")
        return np.array([[float(len(t))] for t in texts])


async def _off_loop(fn: Callable[[], np.ndarray]) -> np.ndarray:
    return await asyncio.to_thread(fn)


async def test_asks_arriving_during_a_batch_share_the_next_call() -> None:
    model = FakeModel()
    batcher = EmbedBatcher(model, _off_loop, max_batch=3)
    first = asyncio.ensure_future(batcher.embed("a"))
    assert await asyncio.to_thread(model.started.wait, 30)
    rest = [asyncio.ensure_future(batcher.embed("b" * n)) for n in range(1, 6)]
    await asyncio.sleep(0.01)
    model.release.set()
    assert float((await first)[0]) == 1.0
    assert [float(v[0]) for v in await asyncio.gather(*rest)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [len(c) for c in model.calls] == [1, 3, 2]  # lone ask at once; then max_batch
    assert batcher.batches == 3


async def test_a_failed_batch_fails_its_asks_only() -> None:
    model = FakeModel()
    batcher = EmbedBatcher(model, _off_loop)
    model.fail = True
    model.release.set()
    with pytest.raises(RuntimeError, match="model broke"):
        await batcher.embed("x")
    model.fail = False
    assert float((await batcher.embed("xy"))[0]) == 2.0


async def test_concurrent_lookups_are_embedded_together(
    embedder: Embedder, semantic_settings: SemanticSettings, tmp_path: Path
) -> None:
    cache = SemanticCache(embedder, EdgeIndex.open(tmp_path / "edge", DIMENSIONS),
                          semantic_settings)  # fmt: skip
    try:
        project = uuid.uuid4()
        questions = [f"How do I renew permit number {i} online?" for i in range(12)]
        calls = embedder.calls
        results = await asyncio.gather(*(cache.lookup(project, "s", q, None) for q in questions))
        assert embedder.calls - calls < len(questions)  # fewer model calls than asks
        for question, (_, vector) in zip(questions, results, strict=True):
            assert np.allclose(vector, embedder.embed_one(question), atol=1e-5)
    finally:
        await cache.close()
