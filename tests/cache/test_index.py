"""Both index engines through the one protocol: qdrant-edge on a temporary path and
qdrant-client's local mode (the test double for a Qdrant server)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from watchllm_cache.index import VectorIndex, payload, point_id
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.index.server import ServerIndex

pytestmark = pytest.mark.unit

DIMS = 8


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIMS, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


@pytest.fixture(params=["edge", "client-local"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    idx: VectorIndex
    if request.param == "edge":
        idx = EdgeIndex.open(tmp_path / "edge", DIMS)
    else:
        idx = ServerIndex.local(str(tmp_path / "local"), "cache", DIMS)
    yield idx
    idx.close()


def put(idx: VectorIndex, key: str, vector: np.ndarray, project: str = "p1", scope: str = "s1",
        ttl: float = 60.0, question: str = "q") -> None:  # fmt: skip
    idx.upsert(point_id(key), vector, payload(project, scope, question, key, time.time() + ttl))


def test_search_finds_the_nearest_within_project_and_scope(index: VectorIndex) -> None:
    put(index, "near", unit(1, 0.1), question="near one")
    put(index, "far", unit(0.2, 1))
    put(index, "other-scope", unit(1, 0.1), scope="s2")
    put(index, "other-project", unit(1, 0.1), project="p2")
    found = index.search(unit(1, 0.1), "s1", "p1", 5)
    assert [c.exact_key for c in found] == ["near", "far"]
    assert found[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert found[0].question == "near one"
    assert found[0].point_id == point_id("near")
    assert [c.exact_key for c in index.search(unit(1, 0.1), "s2", "p1", 5)] == ["other-scope"]
    assert [c.exact_key for c in index.search(unit(1, 0.1), "s1", "p2", 5)] == ["other-project"]
    assert index.search(unit(1, 0.1), "s3", "p1", 5) == []


def test_expired_points_are_never_returned_and_get_purged(index: VectorIndex) -> None:
    put(index, "live", unit(1), ttl=60)
    put(index, "dead", unit(1), ttl=-1)
    assert [c.exact_key for c in index.search(unit(1), "s1", "p1", 5)] == ["live"]
    index.purge_expired(time.time())
    assert index.count() == 1


def test_storing_the_same_answer_again_overwrites(index: VectorIndex) -> None:
    put(index, "k", unit(1), question="first")
    put(index, "k", unit(0, 1), question="second")
    found = index.search(unit(0, 1), "s1", "p1", 5)
    assert [(c.exact_key, c.question) for c in found] == [("k", "second")]


def test_delete_and_delete_project(index: VectorIndex) -> None:
    for key, project in (("a", "p1"), ("b", "p1"), ("c", "p2")):
        put(index, key, unit(1), project=project)
    index.delete(point_id("a"))
    assert [c.exact_key for c in index.search(unit(1), "s1", "p1", 5)] == ["b"]
    index.delete_project("p1")
    assert index.search(unit(1), "s1", "p1", 5) == []
    assert [c.exact_key for c in index.search(unit(1), "s1", "p2", 5)] == ["c"]


def test_edge_index_persists_across_reopen(tmp_path: Path) -> None:
    idx = EdgeIndex.open(tmp_path / "edge", DIMS)
    put(idx, "kept", unit(1))
    idx.close()
    reopened = EdgeIndex.open(tmp_path / "edge", DIMS)
    try:
        assert [c.exact_key for c in reopened.search(unit(1), "s1", "p1", 5)] == ["kept"]
    finally:
        reopened.close()


def test_edge_path_is_single_process(tmp_path: Path) -> None:
    idx = EdgeIndex.open(tmp_path / "edge", DIMS)
    try:
        with pytest.raises(Exception, match="WAL"):
            EdgeIndex.open(tmp_path / "edge", DIMS)
    finally:
        idx.close()
