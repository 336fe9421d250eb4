"""``python -m watchllm_cache eval PAIRS.jsonl``: hit and false-hit rates on labelled pairs.

Each line is ``{"a", "b", "same", "kind"?, "source"?}``. For every pair the eval stores
``a`` and looks ``b`` up through the production code path: the same ``Embedder``, a
qdrant-edge index (in a temporary folder), ``SemanticCache.store_vector`` /
``lookup_vector`` (search filtered by project and scope, then verification), with a
fresh scope per pair so pairs never see each other. The only shortcut: all texts are
embedded up front in length-sorted batches (same model, same vectors: batching does
not change an embedding).

Reported: ``hit_rate`` over ``same`` pairs (a true duplicate was served) and
``false_hit_rate`` over the others (a wrong answer was served), overall, by kind and
by source; and the bare-threshold baseline (cosine only) at the lowest threshold whose
false-hit rate is not above ours (``settings.baseline_threshold``), so the two are
compared at equal false hits. ``--steps`` adds the cumulative effect of each rule.
``--verifier rules|learned`` picks the verification path (default: the setting,
``WATCHLLM_CACHE_VERIFIER``); ``--compare`` adds the other one's numbers on the same
vectors (key ``compare``; without it the report's keys are unchanged).

Failure modes: a missing model folder stops the eval (``ModelMissingError``); a line
that is not a JSON object with ``a``, ``b`` and ``same`` stops it with its number.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from watchllm_cache.embedding import DIMENSIONS, Embedder
from watchllm_cache.index.edge import EdgeIndex
from watchllm_cache.semantic import SemanticCache
from watchllm_cache.settings import SemanticSettings
from watchllm_cache.verify.rules import RULES

_PROJECT = "00000000-0000-4000-8000-00000000e7a1"
_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Outcome:
    same: bool
    kind: str
    source: str
    similarity: float  # cosine of b's nearest stored question (its a), -1 if none
    hit: bool
    rule: str | None  # the rule that refused, if any


def read_pairs(path: Path) -> list[dict[str, Any]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        pair = json.loads(line)
        if not isinstance(pair, dict) or not {"a", "b", "same"} <= pair.keys():
            raise ValueError(f"{path}:{number}: expected an object with a, b and same")
        pairs.append(pair)
    return pairs


def embed_all(embedder: Embedder, texts: Iterable[str]) -> dict[str, np.ndarray]:
    unique = sorted(set(texts), key=len)  # similar lengths batch with little padding
    vectors = embedder.embed(unique, batch_size=32)
    return dict(zip(unique, vectors, strict=True))


def run_pairs(
    pairs: list[dict[str, Any]], embedder: Embedder, settings: SemanticSettings,
    vectors: dict[str, np.ndarray] | None = None,
) -> list[Outcome]:  # fmt: skip
    if vectors is None:
        vectors = embed_all(embedder, (text for p in pairs for text in (p["a"], p["b"])))
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="watchllm-eval-") as tmp:
        index = EdgeIndex.open(Path(tmp) / "index", DIMENSIONS)
        cache = SemanticCache(embedder, index, settings, workers=1)
        threshold = cache.default_threshold
        try:
            for i, pair in enumerate(pairs):
                scope = f"eval-{i}"
                cache.store_vector(_PROJECT, scope, pair["a"], f"pair-{i}", _TTL_SECONDS,
                                   vectors[pair["a"]])  # fmt: skip
                result = cache.lookup_vector(_PROJECT, scope, pair["b"], vectors[pair["b"]],
                                             threshold)  # fmt: skip
                outcomes.append(Outcome(
                    bool(pair["same"]), str(pair.get("kind", "-")), str(pair.get("source", "-")),
                    -1.0 if result.similarity is None else result.similarity,
                    result.hit, result.rule,
                ))  # fmt: skip
        finally:
            index.close()
    return outcomes


def rates(outcomes: list[Outcome], hit: list[bool]) -> dict[str, Any]:
    same = [h for o, h in zip(outcomes, hit, strict=True) if o.same]
    other = [h for o, h in zip(outcomes, hit, strict=True) if not o.same]
    return {
        "pairs": len(outcomes),
        "hit_rate": round(sum(same) / len(same), 4) if same else None,
        "false_hit_rate": round(sum(other) / len(other), 4) if other else None,
    }


def breakdown(outcomes: list[Outcome], hit: list[bool]) -> dict[str, Any]:
    """overall, by_kind and by_source for one decision per pair."""
    out: dict[str, Any] = {"overall": rates(outcomes, hit)}
    for field in ("kind", "source"):
        groups: dict[str, list[int]] = {}
        for i, outcome in enumerate(outcomes):
            groups.setdefault(getattr(outcome, field), []).append(i)
        out[f"by_{field}"] = {
            key: rates([outcomes[i] for i in idx], [hit[i] for i in idx])
            for key, idx in sorted(groups.items())
        }
    return out


def matched_baseline(outcomes: list[Outcome], false_hit_rate: float) -> float:
    """The lowest cosine threshold whose bare false-hit rate is <= ``false_hit_rate``."""
    negatives = sorted((o.similarity for o in outcomes if not o.same), reverse=True)
    allowed = int(false_hit_rate * len(negatives) + 1e-9)
    if allowed >= len(negatives):
        return -1.0
    return float(np.nextafter(negatives[allowed], 2.0))  # just above the first one too many


def steps(outcomes: list[Outcome], threshold: float) -> list[dict[str, Any]]:
    """Cumulative: cosine only, then each rule added in order."""
    names = ["threshold"] + [rule.__name__ for rule in RULES]
    table = []
    for k, name in enumerate(names):
        refused_by = set(names[: k + 1])
        hit = [o.similarity >= threshold and o.rule not in refused_by for o in outcomes]
        table.append({"step": name, **rates(outcomes, hit)})
    return table


def evaluate(
    path: Path, settings: SemanticSettings, embedder: Embedder | None = None,
    *, with_steps: bool = False, compare: bool = False,
) -> dict[str, Any]:  # fmt: skip
    embedder = embedder or Embedder(
        settings.embedding_model_path, settings.embedding_model_name, settings.embedding_threads
    )
    pairs = read_pairs(path)
    vectors = embed_all(embedder, (text for p in pairs for text in (p["a"], p["b"])))
    outcomes = run_pairs(pairs, embedder, settings, vectors)
    ours = breakdown(outcomes, [o.hit for o in outcomes])
    fh = ours["overall"]["false_hit_rate"] or 0.0
    base_threshold = matched_baseline(outcomes, fh)
    report: dict[str, Any] = {
        "overall": ours["overall"], "by_kind": ours["by_kind"], "by_source": ours["by_source"],
        "baseline": breakdown(outcomes, [o.similarity >= base_threshold for o in outcomes]),
        "settings": {
            "verifier": settings.cache_verifier,
            "threshold": settings.cache_threshold if settings.cache_verifier == "rules"
            else settings.cache_candidate_threshold,
            "baseline": "cosine only, at the lowest threshold with false_hit_rate <= ours",
            "baseline_threshold": round(base_threshold, 4),
            "model": settings.embedding_model_name,
            "index": "qdrant-edge (temporary folder)",
            "candidates": settings.cache_candidates,
            "rules": [rule.__name__ for rule in RULES],
        },
    }  # fmt: skip
    if with_steps and settings.cache_verifier == "rules":
        report["steps"] = steps(outcomes, settings.cache_threshold)
    if compare:  # the other verifier on the same vectors, side by side
        other = "rules" if settings.cache_verifier == "learned" else "learned"
        theirs = run_pairs(pairs, embedder, settings.model_copy(update={"cache_verifier": other}),
                           vectors)  # fmt: skip
        report["compare"] = {"verifier": other, **breakdown(theirs, [o.hit for o in theirs])}
    return report
