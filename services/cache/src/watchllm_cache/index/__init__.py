"""The vector index behind the semantic cache: one small protocol, two engines.

- ``EdgeIndex`` (``index/edge.py``): qdrant-edge, Qdrant's engine in-process, on a
  local path. The default: no server to run; one process per path.
- ``ServerIndex`` (``index/server.py``): qdrant-client against a Qdrant server
  (``QDRANT_URL``); qdrant-client's local mode (``":memory:"`` or a path) is its test
  double.

Every point is one stored question: id ``point_id(exact_key)`` (a uuid5, so storing the
same answer again overwrites it), the question's embedding, and a payload with
``project_id``, ``scope``, ``question``, ``exact_key`` and ``expires_at`` (unix s).
Searches filter on project AND scope (keyword indexes) and on ``expires_at`` in the
future, so a hit can never cross projects or contexts and expired points are never
returned; ``purge_expired`` deletes them for good.

Failure modes: engine errors propagate as they are (qdrant-edge raises ``Exception``
subclasses from Rust, qdrant-client raises its own); ``SemanticCache`` turns a failed
search into a miss and a failed store into a logged, counted loss.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from watchllm_cache.settings import SemanticSettings

_POINT_NAMESPACE = uuid.UUID("6f1b5a0e-3c55-5d7c-9a53-7c0c8a1e2b10")


def point_id(exact_key: str) -> str:
    """The index point of one cached answer: stable, so a re-store overwrites."""
    return str(uuid.uuid5(_POINT_NAMESPACE, exact_key))


@dataclass(frozen=True, slots=True)
class Candidate:
    point_id: str
    similarity: float  # cosine, -1..1
    question: str
    exact_key: str
    expires_at: float


def payload(
    project_id: str, scope: str, question: str, exact_key: str, expires_at: float
) -> dict[str, Any]:
    return {"project_id": project_id, "scope": scope, "question": question,
            "exact_key": exact_key, "expires_at": expires_at}  # fmt: skip


def candidate_from(point: str, score: float, data: dict[str, Any] | None) -> Candidate | None:
    """A search result as a Candidate; None when its payload is unusable."""
    if not data:
        return None
    try:
        return Candidate(point, float(score), str(data["question"]), str(data["exact_key"]),
                         float(data["expires_at"]))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


class VectorIndex(Protocol):
    def upsert(self, point_id: str, vector: np.ndarray, payload: dict[str, Any]) -> None: ...

    def search(
        self, vector: np.ndarray, scope: str, project_id: str, limit: int
    ) -> list[Candidate]: ...

    def delete(self, point_id: str) -> None: ...

    def delete_project(self, project_id: str) -> None: ...

    def purge_expired(self, now: float) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def open_index(settings: SemanticSettings, dimensions: int) -> VectorIndex:
    """The index the settings ask for: a Qdrant server when ``QDRANT_URL`` is set,
    else qdrant-edge on ``qdrant_edge_path``."""
    if settings.qdrant_url:
        from watchllm_cache.index.server import ServerIndex

        return ServerIndex.connect(
            settings.qdrant_url, settings.qdrant_collection, dimensions,
            api_key=settings.qdrant_api_key,
        )  # fmt: skip
    from watchllm_cache.index.edge import EdgeIndex

    return EdgeIndex.open(settings.qdrant_edge_path, dimensions)
