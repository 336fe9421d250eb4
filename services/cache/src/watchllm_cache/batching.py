"""Coalescing concurrent embeddings into one model call (issue 18's throughput item).

The service embeds one question per ask; under concurrent asks each one paid a whole
model call. ``EmbedBatcher.embed(text)`` queues the text and, when no batch is being
embedded, starts one; texts that arrive while a batch runs wait for the next, which
takes all of them (up to ``max_batch``). An idle service therefore embeds a lone
question at once (no timer, no added wait); a busy one embeds many per call. A batch
gives the same vectors as single calls (``tests/cache/test_semantic.py`` checks it).

Failure modes: an embedding failure fails every ask of that batch with the same
exception (the next batch is tried afresh); a cancelled waiter does not disturb the
others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import numpy as np

EmbedFn = Callable[[Sequence[str]], np.ndarray]
RunFn = Callable[[Callable[[], np.ndarray]], Awaitable[np.ndarray]]


class EmbedBatcher:
    def __init__(self, embed: EmbedFn, run: RunFn, max_batch: int = 32) -> None:
        self._embed = embed
        self._run = run  # runs a blocking call off the event loop
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._draining = False
        self.batches = 0  # model calls made (for metrics and tests)

    async def embed(self, text: str) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                texts = [text for text, _ in batch]
                try:
                    vectors = await self._run(partial(self._embed, texts))
                except Exception as exc:  # noqa: BLE001 - handed to every waiter of the batch
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                for (_, future), vector in zip(batch, vectors, strict=True):
                    if not future.done():
                        future.set_result(vector)
        finally:
            self._draining = False
