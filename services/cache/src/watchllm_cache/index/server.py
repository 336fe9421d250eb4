"""``ServerIndex``: a Qdrant server through qdrant-client (``QDRANT_URL``).

For replicated cache services: every replica talks to the same collection. The
collection is created when missing (cosine, 384 dims) with keyword payload indexes on
``project_id`` (tenant key) and ``scope`` and a float index on ``expires_at``.
``ServerIndex.local(":memory:" | path)`` runs the same code on qdrant-client's local
mode, which is how the tests exercise it (no server on the test machines).

Failure modes: connection errors and timeouts raise from qdrant-client
(``ResponseHandlingException``, ``UnexpectedResponse``, ``httpx`` errors);
``SemanticCache`` treats them as a miss or a lost store. Local mode is not
thread-safe, so calls are serialised with a lock there (only there).
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http import models

from watchllm_cache.index import Candidate, candidate_from


def _eq(key: str, value: str) -> models.FieldCondition:
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class ServerIndex:
    def __init__(self, client: QdrantClient, collection: str, *, local: bool) -> None:
        self._client = client
        self._collection = collection
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if local else contextlib.nullcontext()
        )

    @classmethod
    def connect(
        cls, url: str, collection: str, dimensions: int, api_key: str | None = None
    ) -> ServerIndex:
        client = QdrantClient(url=url, api_key=api_key, timeout=5)
        index = cls(client, collection, local=False)
        index._ensure_collection(dimensions)
        return index

    @classmethod
    def local(cls, location: str, collection: str, dimensions: int) -> ServerIndex:
        """qdrant-client's local mode: ``":memory:"`` or a folder path."""
        if location == ":memory:":
            client = QdrantClient(location=":memory:")
        else:
            client = QdrantClient(path=location)
        index = cls(client, collection, local=True)
        index._ensure_collection(dimensions)
        return index

    def _ensure_collection(self, dimensions: int) -> None:
        if self._client.collection_exists(self._collection):
            return
        self._client.create_collection(
            self._collection,
            vectors_config=models.VectorParams(size=dimensions, distance=models.Distance.COSINE),
        )
        schemas: list[tuple[str, Any]] = [
            (
                "project_id",
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            ),  # fmt: skip
            ("scope", models.PayloadSchemaType.KEYWORD),
            ("expires_at", models.PayloadSchemaType.FLOAT),
        ]
        with warnings.catch_warnings():
            # Local mode warns that payload indexes have no effect there; a server uses them.
            warnings.simplefilter("ignore", UserWarning)
            for field, schema in schemas:
                self._client.create_payload_index(self._collection, field, field_schema=schema)

    def upsert(self, point_id: str, vector: np.ndarray, payload: dict[str, Any]) -> None:
        point = models.PointStruct(id=point_id, vector=vector.astype(np.float32).tolist(),
                                   payload=payload)  # fmt: skip
        with self._lock:
            self._client.upsert(self._collection, points=[point])

    def search(
        self, vector: np.ndarray, scope: str, project_id: str, limit: int
    ) -> list[Candidate]:
        live = models.FieldCondition(key="expires_at", range=models.Range(gt=time.time()))
        with self._lock:
            response = self._client.query_points(
                self._collection,
                query=vector.astype(np.float32).tolist(),
                query_filter=models.Filter(
                    must=[_eq("project_id", project_id), _eq("scope", scope), live]
                ),
                limit=limit,
                with_payload=True,
            )
        found = (candidate_from(str(p.id), p.score, p.payload) for p in response.points)
        return [c for c in found if c is not None]

    def delete(self, point_id: str) -> None:
        with self._lock:
            self._client.delete(self._collection, models.PointIdsList(points=[point_id]))

    def delete_project(self, project_id: str) -> None:
        selector = models.FilterSelector(filter=models.Filter(must=[_eq("project_id", project_id)]))
        with self._lock:
            self._client.delete(self._collection, selector)

    def purge_expired(self, now: float) -> None:
        expired = models.FieldCondition(key="expires_at", range=models.Range(lte=now))
        selector = models.FilterSelector(filter=models.Filter(must=[expired]))
        with self._lock:
            self._client.delete(self._collection, selector)

    def count(self) -> int:
        with self._lock:
            return self._client.count(self._collection, exact=True).count

    def close(self) -> None:
        with self._lock:
            self._client.close()
