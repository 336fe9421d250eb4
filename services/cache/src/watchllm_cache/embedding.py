"""Sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) through fastembed, offline.

The model is loaded once, from a local folder (``make models``); fastembed is told
the folder with ``specific_model_path`` and so never touches the Hugging Face hub
(``HF_HUB_OFFLINE=1`` is fine). Vectors are 384 floats, L2-normalised, so a dot
product is the cosine.

Embedding is CPU-bound (~4 ms a short question on one thread); callers in the event
loop run it in a worker thread (``SemanticCache`` does). onnxruntime sessions are
safe to call from several threads.

The model reads the first 256 tokens of a text; its tokenizer still splits the whole
text first (a 4 MB text: ~3.4 s), so ``embed`` reads at most ``MAX_TEXT_CHARS`` of
each (256 tokens are ~1,200 characters of English): the vector is the same, the cost
bounded.

Failure modes: a missing or incomplete model folder raises ``ModelMissingError`` at
construction (the service does not start: run ``make models``); an empty text list
returns an empty (0, 384) array.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from fastembed import TextEmbedding

from watchllm_shared.contracts.cache import MAX_SEMANTIC_QUESTION_CHARS

DIMENSIONS = 384
MAX_TEXT_CHARS = MAX_SEMANTIC_QUESTION_CHARS
_REQUIRED = ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ModelMissingError(RuntimeError):
    pass


class Embedder:
    def __init__(self, model_path: Path, model_name: str, threads: int = 1) -> None:
        missing = [name for name in _REQUIRED if not (model_path / name).is_file()]
        if missing:
            raise ModelMissingError(
                f"embedding model incomplete in {model_path} (missing {', '.join(missing)}); "
                "run `make models` (services/cache/scripts/install_model.py)"
            )
        self.model_path = model_path
        self._model = TextEmbedding(
            model_name, specific_model_path=str(model_path), threads=threads
        )
        self.calls = 0  # embed() calls (for metrics and tests)
        self.texts = 0  # texts embedded
        self.seconds = 0.0  # time spent embedding

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), 384) float32, each row unit length."""
        started = time.perf_counter()
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        cut = [text[:MAX_TEXT_CHARS] for text in texts]
        rows = list(self._model.embed(cut, batch_size=batch_size))
        vectors: np.ndarray = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms == 0, 1.0, norms)
        self.calls += 1
        self.texts += len(texts)
        self.seconds += time.perf_counter() - started
        return vectors

    def embed_one(self, text: str) -> np.ndarray:
        """(384,) float32, unit length."""
        vector: np.ndarray = self.embed([text])[0]
        return vector


class WordVectors:
    """Single-word embeddings from the same model, memoised (a bounded dict: the words
    of questions repeat). For the learned verifier's alignment features; thread-safe
    enough (a race embeds a word twice)."""

    def __init__(self, embedder: Embedder, max_words: int = 100_000) -> None:
        self._embedder = embedder
        self._max_words = max_words
        self._vectors: dict[str, np.ndarray] = {}

    def __call__(self, words: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [w for w in dict.fromkeys(words) if w not in self._vectors]
        if missing:
            if len(self._vectors) + len(missing) > self._max_words:
                self._vectors.clear()
            self._vectors.update(zip(missing, self._embedder.embed(missing), strict=True))
        return {w: self._vectors[w] for w in words}
