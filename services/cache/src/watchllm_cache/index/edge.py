"""``EdgeIndex``: qdrant-edge (Qdrant's engine, in-process) on a local path.

The shard is created on first use (cosine, 384 dims, keyword indexes on
``project_id`` — marked as the tenant key — and ``scope``, a float index on
``expires_at``) and loaded afterwards. Writes go to Qdrant's WAL and survive a crash;
``close()`` flushes.

Failure modes: a second process opening the same path fails at ``open`` (the WAL is
locked): one cache process per path, by design (replicas use a Qdrant server). A
shard created with other dimensions fails ``open`` with the engine's error. Calls
are synchronous (~0.1 ms filtered search at 10k points); the engine is thread-safe.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from watchllm_cache.index import Candidate, candidate_from


def _eq(key: str, value: str) -> qe.FieldCondition:
    return qe.FieldCondition(key, match=qe.MatchValue(value))


class EdgeIndex:
    def __init__(self, shard: qe.EdgeShard) -> None:
        self._shard = shard

    @classmethod
    def open(cls, path: Path, dimensions: int) -> EdgeIndex:
        path.mkdir(parents=True, exist_ok=True)
        vectors = qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine)
        config = qe.EdgeConfig(vectors=vectors)
        if any(path.iterdir()):  # an existing shard
            return cls(qe.EdgeShard.load(str(path), config))
        shard = qe.EdgeShard.create(str(path), config)
        for op in (
            qe.UpdateOperation.create_field_index(
                "project_id", qe.KeywordIndexParams(is_tenant=True)
            ),
            qe.UpdateOperation.create_field_index("scope", qe.PayloadSchemaType.Keyword),
            qe.UpdateOperation.create_field_index("expires_at", qe.PayloadSchemaType.Float),
        ):
            shard.update(op)
        return cls(shard)

    def upsert(self, point_id: str, vector: np.ndarray, payload: dict[str, Any]) -> None:
        point = qe.Point(point_id, vector.astype(np.float32).tolist(), payload)
        self._shard.update(qe.UpdateOperation.upsert_points([point]))

    def search(
        self, vector: np.ndarray, scope: str, project_id: str, limit: int
    ) -> list[Candidate]:
        live = qe.FieldCondition("expires_at", range=qe.RangeFloat(gt=time.time()))
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector.astype(np.float32).tolist()),
            filter=qe.Filter(must=[_eq("project_id", project_id), _eq("scope", scope), live]),
            with_payload=True,
        )
        found = (candidate_from(str(p.id), p.score, p.payload) for p in self._shard.query(request))
        return [c for c in found if c is not None]

    def delete(self, point_id: str) -> None:
        self._shard.update(qe.UpdateOperation.delete_points([point_id]))

    def delete_project(self, project_id: str) -> None:
        project = qe.Filter(must=[_eq("project_id", project_id)])
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(project))

    def purge_expired(self, now: float) -> None:
        expired = qe.Filter(must=[qe.FieldCondition("expires_at", range=qe.RangeFloat(lte=now))])
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(expired))

    def count(self) -> int:
        return self._shard.count(qe.CountRequest(exact=True))

    def close(self) -> None:
        self._shard.flush()
        self._shard.close()
