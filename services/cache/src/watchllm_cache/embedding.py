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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastembed import TextEmbedding
from fastembed.text.onnx_embedding import OnnxTextEmbedding

from watchllm_shared.contracts.cache import MAX_SEMANTIC_QUESTION_CHARS

DIMENSIONS = 384
MAX_TEXT_CHARS = MAX_SEMANTIC_QUESTION_CHARS
_REQUIRED = ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


class ModelMissingError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class TokenStates:
    """One text's contextual token states: the model's last layer per word piece
    ([CLS], [SEP] and padding dropped), each row unit length, with the pieces' text."""

    pieces: tuple[str, ...]
    vectors: np.ndarray  # (len(pieces), 384) float16 (a memo holds many)


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

    def embed_states(
        self, texts: Sequence[str], batch_size: int = 32
    ) -> tuple[np.ndarray, list[TokenStates]]:
        """``embed``'s vectors (the same numbers: the model's own pooling of the same
        output) and each text's ``TokenStates``, from one model pass per batch."""
        started = time.perf_counter()
        model = self._model.model
        assert isinstance(model, OnnxTextEmbedding), type(model)  # the pooled MiniLM family
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        states: list[TokenStates] = []
        cut = [text[:MAX_TEXT_CHARS] for text in texts]
        for start in range(0, len(cut), batch_size):
            output = model.onnx_embed(cut[start : start + batch_size])
            pooled = np.asarray(list(model._post_process_onnx_output(output)), dtype=np.float32)
            vectors[start : start + len(pooled)] = pooled
            mask, input_ids = np.asarray(output.attention_mask), np.asarray(output.input_ids)
            for row, ids, keep in zip(output.model_output, input_ids, mask, strict=True):
                n = int(keep.sum())
                rows = np.asarray(row[1 : n - 1], dtype=np.float32)
                rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)
                assert model.tokenizer is not None  # loaded by the onnx_embed call above
                pieces = tuple(str(model.tokenizer.id_to_token(int(i))) for i in ids[1 : n - 1])
                states.append(TokenStates(pieces, rows.astype(np.float16)))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms == 0, 1.0, norms)
        self.calls += 1
        self.texts += len(texts)
        self.seconds += time.perf_counter() - started
        return vectors, states

    def embed_one(self, text: str) -> np.ndarray:
        """(384,) float32, unit length."""
        vector: np.ndarray = self.embed([text])[0]
        return vector


class StateMemo:
    """Contextual token states by text, memoised: filled by whoever embeds a text with
    ``Embedder.embed_states`` (``put``) and computed on a miss (``__call__``). For the
    learned verifier's alignment features. Bounded by word pieces held (float16 rows:
    the default 100,000 pieces are ~77 MB); the oldest texts go first."""

    def __init__(self, embedder: Embedder, max_pieces: int = 100_000) -> None:
        self._embedder = embedder
        self._max_pieces = max_pieces
        self._pieces = 0
        self._states: dict[str, TokenStates] = {}

    def put(self, texts: Sequence[str], states: Sequence[TokenStates]) -> None:
        for text, state in zip(texts, states, strict=True):
            old = self._states.pop(text, None)
            self._pieces += len(state.pieces) - (len(old.pieces) if old else 0)
            self._states[text] = state
        while self._pieces > self._max_pieces and len(self._states) > len(texts):
            oldest = next(iter(self._states))
            self._pieces -= len(self._states.pop(oldest).pieces)

    def __call__(self, texts: Sequence[str]) -> dict[str, TokenStates]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._states]
        found = {t: self._states[t] for t in texts if t in self._states}
        if missing:
            computed = self._embedder.embed_states(missing)[1]
            self.put(missing, computed)
            found.update(zip(missing, computed, strict=True))
        return found
