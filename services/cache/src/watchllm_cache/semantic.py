"""The semantic cache core: embed, search, verify; store; flush; delete.

``SemanticCache`` is what the cache service's transport calls (``service/``): it knows
nothing of Redis. A lookup embeds the question (once; the embedding is returned so
the transport can park it for the store that follows a miss), asks the index for the
nearest stored questions of the same project AND scope, and hands each candidate, best
first, to ``verify``; the first one verification accepts is the hit.

Threads: embedding is CPU-bound (~4 ms) and index calls block, so they run on a small
thread pool (``asyncio.to_thread`` would share the default pool with everything
else); the event loop only awaits them. Concurrent lookups' questions are embedded
together, one model call per batch (``batching.EmbedBatcher``).

Failure modes, as the transport sees them:
- the index fails during a lookup: the lookup is a miss with reason
  ``"index error: <type>"`` (logged, counted in ``index_errors``); the embedding is
  still returned;
- the index fails during a store, a flush or a delete: the exception propagates (the
  transport retries or drops the store; a lost store only costs a future hit);
- the embedder fails: the exception propagates (a bug or a broken model folder).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

import numpy as np

from watchllm_cache.batching import EmbedBatcher
from watchllm_cache.embedding import Embedder, StateMemo
from watchllm_cache.index import Candidate, VectorIndex, payload, point_id
from watchllm_cache.settings import SemanticSettings
from watchllm_cache.verify import Verdict, verify, verify_learned
from watchllm_cache.verify.learned import PairModel

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LookupResult:
    hit: bool
    exact_key: str | None = None  # the CachedAnswer to serve, on a hit
    similarity: float | None = None  # cosine of the best candidate (hit or refused)
    reason: str | None = None  # why there is no hit
    rule: str | None = None  # the verification rule that refused the best candidate


class SemanticCache:
    def __init__(
        self, embedder: Embedder, index: VectorIndex, settings: SemanticSettings,
        *, workers: int = 2,
    ) -> None:  # fmt: skip
        self._embedder = embedder
        self._index = index
        self._settings = settings
        learned = settings.cache_verifier == "learned"
        self._model = PairModel.load(settings.cache_verifier_model_path) if learned else None
        self._states = StateMemo(embedder)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semantic")
        self._batcher = EmbedBatcher(self._embed if learned else embedder.embed, self._run)
        self._next_purge = time.monotonic() + settings.cache_purge_interval_seconds
        self.index_errors = 0
        self.refusals: dict[str, int] = {}  # rule name -> candidates it refused

    @property
    def default_threshold(self) -> float:
        """The cosine a candidate needs when neither project nor request sets one: the
        rules' threshold, or the learned verifier's lower candidate threshold."""
        if self._model is not None:
            return self._settings.cache_candidate_threshold
        return self._settings.cache_threshold

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """The learned verifier's embedding: the vectors, and the texts' contextual token
        states kept from the same model pass for the pair features."""
        vectors, states = self._embedder.embed_states(texts)
        self._states.put(texts, states)
        return vectors

    def _verify(self, question: str, candidate: str, similarity: float, bar: float) -> Verdict:
        if self._model is not None:
            return verify_learned(question, candidate, similarity, bar, self._model, self._states)
        return verify(question, candidate, similarity, bar)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def lookup(
        self,
        project_id: UUID,
        scope: str,
        question: str,
        threshold: float | None,
        min_threshold: float | None = None,
    ) -> tuple[LookupResult, np.ndarray]:
        """The hit for this question in this project and scope, if verification finds
        one; and the question's embedding (float32, 384). ``threshold`` is the project's
        bar (None: this service's default); ``min_threshold``, a request's own, can only
        raise it."""
        bar = self.default_threshold if threshold is None else threshold
        if min_threshold is not None:
            bar = max(bar, min_threshold)

        vector = await self._batcher.embed(question)
        result = await self._run(
            lambda: self.lookup_vector(str(project_id), scope, question, vector, bar)
        )
        return result, vector

    def lookup_vector(
        self, project_id: str, scope: str, question: str, vector: np.ndarray, threshold: float
    ) -> LookupResult:
        """``lookup`` with the embedding already computed (blocking; the eval uses it)."""
        try:
            candidates = self._index.search(
                vector, scope, project_id, self._settings.cache_candidates
            )
        except Exception as exc:  # noqa: BLE001 - any index failure is a miss, by design
            self.index_errors += 1
            log.warning("semantic index search failed: %r", exc)
            return LookupResult(hit=False, reason=f"index error: {type(exc).__name__}")
        return self.decide(question, candidates, threshold)

    def decide(self, question: str, candidates: list[Candidate], threshold: float) -> LookupResult:
        """The first candidate (best first) that verification accepts; else a miss
        carrying the best candidate's similarity and the reason it was refused."""
        if not candidates:
            return LookupResult(hit=False, reason="no candidate")
        first: tuple[Candidate, Verdict] | None = None
        for candidate in sorted(candidates, key=lambda c: c.similarity, reverse=True):
            verdict = self._verify(question, candidate.question, candidate.similarity, threshold)
            if verdict.hit:
                return LookupResult(True, candidate.exact_key, candidate.similarity)
            if verdict.rule is not None:
                self.refusals[verdict.rule] = self.refusals.get(verdict.rule, 0) + 1
            first = first or (candidate, verdict)
        assert first is not None
        return LookupResult(False, None, first[0].similarity, first[1].reason, first[1].rule)

    async def store(
        self, project_id: UUID, scope: str, question: str, exact_key: str, ttl_seconds: int,
        embedding: np.ndarray | None,
    ) -> None:  # fmt: skip
        """Index the question of a cached answer; embeds only when ``embedding`` is None
        (pass the one ``lookup`` returned). Storing the same exact key overwrites."""

        def work() -> None:
            if embedding is not None:
                vector = embedding
            elif self._model is not None:
                vector = self._embed([question])[0]
            else:
                vector = self._embedder.embed_one(question)
            self.store_vector(str(project_id), scope, question, exact_key, ttl_seconds, vector)

        await self._run(work)

    def store_vector(
        self, project_id: str, scope: str, question: str, exact_key: str, ttl_seconds: int,
        vector: np.ndarray,
    ) -> None:  # fmt: skip
        """``store`` with the embedding at hand (blocking; the eval uses it)."""
        data = payload(project_id, scope, question, exact_key, time.time() + ttl_seconds)
        self._index.upsert(point_id(exact_key), vector, data)
        self._maybe_purge()

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now >= self._next_purge:
            self._next_purge = now + self._settings.cache_purge_interval_seconds
            self._index.purge_expired(time.time())

    async def purge_expired(self) -> None:
        await self._run(lambda: self._index.purge_expired(time.time()))

    async def flush_project(self, project_id: UUID) -> None:
        await self._run(lambda: self._index.delete_project(str(project_id)))

    async def delete(self, exact_key: str) -> None:
        await self._run(lambda: self._index.delete(point_id(exact_key)))

    async def index_healthy(self) -> bool:
        """Whether the index answers (a count); for the heartbeat's Qdrant status."""
        try:
            await self._run(self._index.count)
        except Exception:  # noqa: BLE001 - any failure of the engine means "down"
            log.warning("vector index not answering", exc_info=True)
            return False
        return True

    async def close(self) -> None:
        try:
            await self._run(self._index.close)
        finally:
            self._pool.shutdown(wait=True)
